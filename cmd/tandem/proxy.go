package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

func newProxyCmd(g *globalOptions) *cobra.Command {
	return newServeCmd(g, "proxy --upstream mongodb://HOST:PORT/",
		"Run the MongoDB wire-protocol proxy in front of an upstream deployment",
		`Run the MongoDB wire-protocol proxy. Applications point their connection string at --listen
instead of at MongoDB and change nothing else (drop replicaSet= from their URI: the proxy
presents itself as a router, like mongos). Without --spec every command passes through
unchanged; with --spec the proxy converges the writes on each spec's source collection to its
target, steered by the migration's flags (see flags/README.md), and serves the admin API.`, false)
}

// newRunCmd is `tandem run`: the proxy, the journal worker and each spec's backfill in one
// process, what an operator runs on one machine.
func newRunCmd(g *globalOptions) *cobra.Command {
	return newServeCmd(g, "run --upstream mongodb://HOST:PORT/ --spec SPEC...",
		"Run the proxy, the journal worker and the backfill of each spec in one process",
		`Run everything a migration needs on one machine: the proxy (as tandem proxy, with --spec
required), the journal worker, and each spec's backfill, which copies the history while the
migration is in phase shadow or dual and pauses outside them. The backfill resumes from the
catalog after a restart; its progress is in tandem backfill status, its control in tandem
backfill pause|resume|rate. A target that already holds documents before any backfill started
is refused unless --allow-existing.`, true)
}

func newServeCmd(g *globalOptions, use, short, long string, withBackfill bool) *cobra.Command {
	var (
		o  proxyOptions
		mo migrationOptions
		bo backfillOptions
	)
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long,
		Args:  cobra.NoArgs,
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
			if withBackfill {
				if !mo.enabled() {
					return usagef("run needs --spec: it runs the migrations of its specs")
				}
				if _, err := bo.config(); err != nil {
					return err
				}
				mo.backfill = &bo
				if mo.cdc != cdcAuto && mo.cdc != cdcOn && mo.cdc != cdcOff {
					return usagef("--cdc %q: want auto, on or off", mo.cdc)
				}
				switch {
				case mo.cdcApply != cdcApplyTailer && mo.cdcApply != cdcApplyJournal:
					return usagef("--cdc-apply %q: want tailer or journal", mo.cdcApply)
				case mo.cdcApply == cdcApplyJournal && mo.cdc == cdcOff:
					return usagef("--cdc-apply journal: change capture is off (--cdc off), so nothing would be published")
				}
			}
			if err := mo.validate(); err != nil {
				return err
			}
			s, err := startStack(cmd.Context(), o, &mo, o.upstream, log)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "tandem %s: applications connect to %s\n", cmd.Name(), s.proxyURI())
			if u := s.adminURL(); u != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "tandem %s: admin at %s (/metrics, /healthz, /v1/)\n", cmd.Name(), u)
			}
			return s.wait(cmd.Context())
		},
	}
	o.addFlags(cmd)
	mo.addFlags(cmd, false)
	if withBackfill {
		bo.addFlags(cmd)
		cmd.Flags().StringVar(&mo.cdc, "cdc", cdcAuto, "change capture (forward in shadow, dual and cutover; reverse in cutover and finalized): auto (where the store has change streams, a warning where not), on (refuse to start without them) or off")
		_ = cmd.RegisterFlagCompletionFunc("cdc", fixedValues(cdcAuto, cdcOn, cdcOff))
		cmd.Flags().StringVar(&mo.cdcApply, "cdc-apply", cdcApplyTailer, "who converges the forward change stream: tailer (the elected tailer itself) or journal (it publishes the keys to the Kafka journal, and the journal workers of every tandem run converge them; the reverse path always converges itself)")
		_ = cmd.RegisterFlagCompletionFunc("cdc-apply", fixedValues(cdcApplyTailer, cdcApplyJournal))
	}
	cmd.Flags().StringVar(&o.upstream, "upstream", "", "connection string of the MongoDB deployment behind the proxy (required); TLS options in it apply to the proxy's upstream connections")
	return cmd
}
