package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"

	"github.com/tandemdb/tandem/transform"
)

// defaultConnectTimeout bounds reaching the catalog, a store or the Kafka brokers at start-up.
const defaultConnectTimeout = 5 * time.Second

// connectMongo connects to uri and pings it, giving up after timeout. what names the URI for
// the operator ("--catalog", "spec users.yaml: target"); every failure is one line that says
// what, the address with its credentials removed, and the driver's last error, instead of
// the driver's topology description.
func connectMongo(ctx context.Context, what, uri string, timeout time.Duration) (*mongo.Client, error) {
	opts := options.Client().ApplyURI(uri)
	if err := opts.Validate(); err != nil {
		return nil, usagef("%s %s: not a valid connection string: %s", what, redactURI(uri), scrub(err.Error(), uri))
	}
	// The ping's deadline bounds the wait; the client keeps the URI's own timeouts for later.
	client, err := mongo.Connect(opts)
	if err != nil {
		return nil, usagef("%s %s: %s", what, redactURI(uri), scrub(err.Error(), uri))
	}
	pingCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := client.Ping(pingCtx, nil); err != nil {
		_ = client.Disconnect(context.Background())
		return nil, unreachable(what, uri, timeout, err)
	}
	return client, nil
}

// unreachable turns a failed ping into one line naming what could not be reached and why.
func unreachable(what, uri string, timeout time.Duration, err error) error {
	cause := err.Error()
	var sse topology.ServerSelectionError
	if errors.As(err, &sse) {
		cause = "no server answered"
		for _, s := range sse.Desc.Servers {
			if s.LastError != nil {
				cause = s.LastError.Error()
				break
			}
		}
	}
	return fmt.Errorf("%s %s: not reachable within %s: %s", what, redactURI(uri), timeout, scrub(oneLine(cause), uri))
}

// redactURI is uri with its user information and secret parameters replaced, for messages.
func redactURI(uri string) string { return transform.RedactURI(uri) }

// scrub removes credentials from msg, a driver's error about uri: every URI in it is
// redacted, and uri's password is removed wherever the error quoted it alone.
func scrub(msg, uri string) string {
	msg = transform.RedactText(msg)
	u, err := url.Parse(uri)
	if err != nil {
		return msg
	}
	if pw, has := u.User.Password(); has && pw != "" {
		msg = strings.ReplaceAll(msg, pw, "REDACTED")
		if esc := url.QueryEscape(pw); esc != pw {
			msg = strings.ReplaceAll(msg, esc, "REDACTED")
		}
	}
	return msg
}

// storeOverrides are the --source-uri and --target-uri flags: where the stores really are when
// the spec names other addresses (the demo's store, a staging copy). Empty fields keep the spec's.
type storeOverrides struct {
	sourceURI string
	targetURI string
}

// apply points spec at the overridden stores: a MongoDB endpoint's URI, or a DynamoDB
// endpoint's endpoint URL.
func (so storeOverrides) apply(spec *transform.Spec) error {
	if err := overrideEndpoint(&spec.Source, "--source-uri", so.sourceURI); err != nil {
		return err
	}
	return overrideEndpoint(&spec.Target, "--target-uri", so.targetURI)
}

func overrideEndpoint(ep *transform.Endpoint, flag, uri string) error {
	if uri == "" {
		return nil
	}
	switch ep.Kind {
	case transform.StoreDynamoDB:
		if !strings.HasPrefix(uri, "http://") && !strings.HasPrefix(uri, "https://") {
			return usagef("%s %s: %s is a DynamoDB table: want its endpoint URL, http:// or https://", flag, redactURI(uri), ep)
		}
		ep.EndpointURL = uri
	default:
		if !strings.HasPrefix(uri, "mongodb://") && !strings.HasPrefix(uri, "mongodb+srv://") {
			return usagef("%s %s: %s is a MongoDB collection: want a mongodb:// or mongodb+srv:// URI", flag, redactURI(uri), ep)
		}
		ep.URI = uri
	}
	return nil
}
