package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

func newProxyCmd(g *globalOptions) *cobra.Command {
	var (
		o  proxyOptions
		mo migrationOptions
	)
	cmd := &cobra.Command{
		Use:   "proxy --upstream mongodb://HOST:PORT/",
		Short: "Run the MongoDB wire-protocol proxy in front of an upstream deployment",
		Long: `Run the MongoDB wire-protocol proxy. Applications point their connection string at --listen
instead of at MongoDB and change nothing else (drop replicaSet= from their URI: the proxy
presents itself as a router, like mongos). Without --spec every command passes through
unchanged; with --spec the proxy converges the writes on each spec's source collection to its
target, steered by the migration's flags (see flags/README.md), and serves the admin API.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if o.upstream == "" {
				return usagef("--upstream is required (for example --upstream mongodb://127.0.0.1:27017/)")
			}
			if !strings.HasPrefix(o.upstream, "mongodb://") && !strings.HasPrefix(o.upstream, "mongodb+srv://") {
				return usagef("--upstream: want a mongodb:// or mongodb+srv:// URI")
			}
			if err := o.validate(); err != nil {
				return err
			}
			if err := mo.validate(); err != nil {
				return err
			}
			s, err := startStack(cmd.Context(), o, &mo, o.upstream, log)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "tandem proxy: applications connect to %s\n", s.proxyURI())
			if u := s.adminURL(); u != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "tandem proxy: admin at %s (/metrics, /healthz, /v1/)\n", u)
			}
			return s.wait(cmd.Context())
		},
	}
	o.addFlags(cmd)
	mo.addFlags(cmd, false)
	cmd.Flags().StringVar(&o.upstream, "upstream", "", "connection string of the MongoDB deployment behind the proxy (required); TLS options in it apply to the proxy's upstream connections")
	return cmd
}
