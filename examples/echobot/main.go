// Command echobot is a small example of a program that uses the hush
// agent's API (docs/agent.md) through package client/agent: it answers
// every message with its text, after "echo: ".
//
//	hush --home DIR agent &
//	hush --home DIR accept LINK     # or invite: the bot's contacts
//	echobot --home DIR
//
// It stops at SIGINT or SIGTERM, or when the agent stops.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/hushrelay/hush/client"
	"github.com/hushrelay/hush/client/agent"
)

func main() {
	home := flag.String("home", os.Getenv("HUSH_HOME"), "the hush home `directory` whose agent to use")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *home); err != nil {
		fmt.Fprintln(os.Stderr, "echobot:", err)
		os.Exit(1)
	}
}

// run answers messages until ctx ends or the agent stops.
func run(ctx context.Context, home string) error {
	conn, err := agent.Dial(ctx, home)
	if err != nil {
		return err // agent.ErrNoAgent: start "hush agent" first
	}
	defer conn.Close()
	sub, err := conn.Subscribe(ctx, "") // every contact's events
	if err != nil {
		return err
	}
	for {
		var ev agent.Event
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-sub.Events():
			if !ok {
				return errors.New("the agent stopped")
			}
			ev = e
		}
		if ev.Kind == client.EventMessage {
			// Answer first, then ack: an event that was not acked comes
			// again to the next subscription, so no message goes
			// unanswered if the bot or the agent dies in between.
			_, err := conn.Send(ctx, ev.Contact, "echo: "+ev.Text)
			switch {
			case errors.Is(err, client.ErrTooLong):
				_, err = conn.Send(ctx, ev.Contact, "too long to echo")
			case err == nil:
				fmt.Printf("answered %s\n", ev.Contact)
			}
			if err != nil {
				return err
			}
		}
		if _, err := conn.Ack(ctx, ev.ID); err != nil {
			return err
		}
	}
}
