package relay

import (
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/hushrelay/hush/queue"
)

// metrics are a relay's Prometheus metrics, in a registry of their own.
//
// They are aggregate only: no metric is labelled by queue, session or
// address, and the only labels are the command name, the error code, the
// budget, the transport, the limit reached and the reason a forwarded
// command was refused, each from a fixed set. Counting on the hot path is
// an atomic add on a counter created in advance: nothing is allocated per
// command or message. Gauges that need the store or the relay's lock are computed
// when scraped.
type metrics struct {
	reg *prometheus.Registry

	sessionsTotal     prometheus.Counter
	handshakeFailures prometheus.Counter
	queuesCreated     prometheus.Counter
	queuesDeleted     prometheus.Counter
	queuesExpired     prometheus.Counter
	messagesReceived  prometheus.Counter
	messagesDelivered prometheus.Counter
	// messagesPrepared counts the MSG events sent from memory
	// (preparedEvent in session.go), included in messagesDelivered.
	messagesPrepared prometheus.Counter
	messagesAcked    prometheus.Counter
	messagesExpired  prometheus.Counter
	commitWait       prometheus.Histogram
	commitSeconds    prometheus.Histogram
	commitOps        prometheus.Histogram
	commitErrors     prometheus.Counter
	trims            prometheus.Counter
	trimErrors       prometheus.Counter
	acceptErrors     prometheus.Counter
	storageRefusals  prometheus.Counter
	// delayed* count the commands that waited for a budget: the session's
	// command budget, its error budget, the relay's NEW rate.
	delayedCommands, delayedFailures, delayedNew prometheus.Counter
	// Private routing (PROTOCOL.md section 20): PFWD answered FRES, and
	// PRXY and PFWD that failed (ERR PROXY, or the destination's ERR), on
	// the forwarding side; RFWD received, and refused by reason, on the
	// destination's.
	forwarded, forwardFailures, forwardedReceived prometheus.Counter
	forwardedRefused                              [forwardRefusalCount]prometheus.Counter
	delayedForwards                               prometheus.Counter
	// refused counts refused connection attempts by transport and reason.
	refused [transportCount][refusalCount]prometheus.Counter

	// commands and errors are indexed by tag and by code; the entries for
	// values that are not commands or codes are nil.
	commands [queue.TagRFWD + 1]prometheus.Counter
	errors   [queue.TIME + 1]prometheus.Counter
}

// newMetrics creates the metrics of r. The gauges computed at scrape time
// read r's fields, so r must be complete before the first scrape.
func newMetrics(r *Relay) *metrics {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "hush_relay", Name: name, Help: help})
	}
	m := &metrics{
		reg:               prometheus.NewRegistry(),
		sessionsTotal:     counter("sessions_total", "Sessions that completed the transport handshake."),
		handshakeFailures: counter("handshake_failures_total", "Connections that failed the TLS handshake or its deadline."),
		queuesCreated:     counter("queues_created_total", "Queues created (NEW answered IDS)."),
		queuesDeleted:     counter("queues_deleted_total", "Queues deleted by their recipient (DEL)."),
		queuesExpired:     counter("queues_expired_total", "Queues never secured that expired."),
		messagesReceived:  counter("messages_received_total", "Messages stored durably (SEND answered OK)."),
		messagesDelivered: counter("messages_delivered_total", "Messages handed to recipients (MSG events and GET answers, redeliveries included)."),
		messagesPrepared:  counter("messages_delivered_from_memory_total", "MSG events of messages delivered without reading them back from the store: prepared while the SEND was handled, for a subscriber with nothing outstanding, and sent once the message was stored as its queue's only one (included in messages_delivered_total)."),
		messagesAcked:     counter("messages_acknowledged_total", "Messages acknowledged and deleted (ACK answered OK)."),
		messagesExpired:   counter("messages_expired_total", "Undelivered messages deleted at the end of their lifetime."),
		commitWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "hush_relay", Name: "store_commit_wait_seconds",
			Help:    "How long the oldest operation of each group commit had been queued when its transaction began: behind the previous commit and, above about 2,000 operations a second, gathering (at most 2 ms from when it was queued).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16), // 0.1 ms to 3.3 s
		}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "hush_relay", Name: "store_commit_seconds",
			Help:    "Duration of the store's group commits, fsync included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14), // 0.5 ms to 4 s
		}),
		commitOps: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "hush_relay", Name: "store_commit_operations",
			Help:    "Store operations (a stored message, an acknowledgement, a new queue...) per group commit: above about 2,000 a second the relay waits up to 2 ms to gather 16.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10), // 1 to 512, the most per commit
		}),
		commitErrors: counter("store_commit_errors_total", "Group commits that failed: every command in them was answered ERR INTERNAL, except after a lack of disk space (ENOSPC), when they are applied again one per transaction."),
		trims:        counter("store_mapping_trims_total", "Times the store file's pages were dropped from the relay's memory mapping (file-backed memory above the mapped store limit)."),
		trimErrors:   counter("store_mapping_trim_errors_total", "Checks of the relay's file-backed memory, or drops of the mapping, that failed (at most ten a second)."),
	}
	m.storageRefusals = counter("storage_refusals_total", "NEW and SEND answered ERR QUOTA because the store holds its byte cap or the disk is below its reserve; logged at most every 10 s.")
	m.acceptErrors = counter("accept_errors_total", "Errors accepting connections (for example out of file descriptors); logged at most every 10 s.")
	delayed := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "hush_relay", Name: "commands_delayed_total",
		Help: "Commands that waited for a budget (slowed down, not refused): commands (the session's budget of all commands), failures (its budget of ERR AUTH and SYNTAX answers), relay_new (the relay-wide NEW rate).",
	}, []string{"budget"})
	m.delayedCommands = delayed.WithLabelValues("commands")
	m.delayedFailures = delayed.WithLabelValues("failures")
	m.delayedNew = delayed.WithLabelValues("relay_new")
	m.delayedForwards = delayed.WithLabelValues("forward")
	m.forwarded = counter("forwarded_total", "Commands forwarded to other relays for clients (PFWD answered with the destination's sealed answer).")
	m.forwardFailures = counter("forward_failures_total", "Forwarding that failed: relay-to-relay sessions that could not be opened, PRXY and PFWD answered ERR PROXY or with the destination's ERR in clear.")
	m.forwardedReceived = counter("forwarded_received_total", "Commands received forwarded by other relays (RFWD).")
	forwardRefused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "hush_relay", Name: "forwarded_refused_total",
		Help: "Forwarded commands (RFWD) refused, by reason: open (did not open: changed, or sealed for another session), replay (ephemeral key seen), time (timestamp outside the window), full (replay filter full).",
	}, []string{"reason"})
	for why := range forwardRefusalCount {
		m.forwardedRefused[why] = forwardRefused.WithLabelValues(why.String())
	}
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "hush_relay", Name: "connections_refused_total",
		Help: "Connection attempts refused before their handshake, by transport and by the limit reached (sessions, address, prefix, handshakes): TCP connections, and QUIC Initial packets of unknown connections (a QUIC attempt sends one or more, each answered CONNECTION_REFUSED); logged at most every 10 s.",
	}, []string{"transport", "limit"})
	for t := range transportCount {
		for why := refusedSessions; why < refusalCount; why++ {
			m.refused[t][why] = refused.WithLabelValues(t.String(), why.String())
		}
	}
	commands := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "hush_relay", Name: "commands_total", Help: "Commands received, by command.",
	}, []string{"command"})
	for tag := queue.TagNEW; tag < queue.Tag(len(m.commands)); tag++ {
		if tag.IsCommand() {
			m.commands[tag] = commands.WithLabelValues(tag.String())
		}
	}
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "hush_relay", Name: "errors_total", Help: "ERR responses sent, by error code.",
	}, []string{"code"})
	for code := queue.AUTH; code <= queue.TIME; code++ {
		if !strings.HasPrefix(code.String(), "ErrorCode(") {
			m.errors[code] = errs.WithLabelValues(code.String())
		}
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "hush_relay", Name: name, Help: help}, f)
	}
	m.reg.MustRegister(
		m.sessionsTotal, m.handshakeFailures, m.queuesCreated, m.queuesDeleted, m.queuesExpired,
		m.messagesReceived, m.messagesDelivered, m.messagesPrepared, m.messagesAcked, m.messagesExpired,
		m.commitWait, m.commitSeconds, m.commitOps, m.commitErrors, m.trims, m.trimErrors, commands, errs,
		m.acceptErrors, delayed, refused, m.storageRefusals,
		m.forwarded, m.forwardFailures, m.forwardedReceived, forwardRefused,
		gauge("forward_sessions", "Relay-to-relay sessions held now to forward commands (dialing included).", func() float64 {
			return float64(r.forwarder.count())
		}),
		gauge("forward_enabled", "1 if the relay forwards commands for clients (PRXY, PFWD), else 0.", func() float64 {
			if r.cfg.DisableForwarding {
				return 0
			}
			return 1
		}),
		gauge("replay_filter_keys", "Ephemeral keys of forwarded commands remembered now to refuse replays.", func() float64 {
			return float64(r.replay.size())
		}),
		gauge("storage_full", "1 while NEW and SEND are refused for lack of storage (byte cap or free-disk reserve), else 0.", func() float64 {
			if r.storageFull() {
				return 1
			}
			return 0
		}),
		gauge("connections", "Connections held now, TCP and QUIC, handshaking or in a session.", func() float64 {
			n, _ := r.admit.counts()
			return float64(n)
		}),
		gauge("handshakes", "Connections whose handshakes are in progress now.", func() float64 {
			_, n := r.admit.counts()
			return float64(n)
		}),
		gauge("sessions", "Sessions open now.", func() float64 {
			r.mu.Lock()
			defer r.mu.Unlock()
			return float64(len(r.sessions))
		}),
		gauge("subscriptions", "Queues with a subscriber now.", func() float64 {
			r.mu.Lock()
			defer r.mu.Unlock()
			return float64(len(r.subs))
		}),
		gauge("draining", "1 in drain mode (NEW refused), else 0.", func() float64 {
			if r.draining.Load() {
				return 1
			}
			return 0
		}),
		gauge("certificate_expiry_timestamp_seconds", "When the online TLS certificate ends (Unix time): rotate it before.", func() float64 {
			return float64(r.cert.Load().notAfter.Unix())
		}),
		gauge("start_time_seconds", "When the relay started (Unix time).", func() float64 {
			return float64(r.started.Unix())
		}),
		storeCollector{r},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// countCommand counts a command by its tag.
func (m *metrics) countCommand(tag queue.Tag) {
	if int(tag) < len(m.commands) && m.commands[tag] != nil {
		m.commands[tag].Inc()
	}
}

// countError counts an ERR response by its code.
func (m *metrics) countError(code queue.ErrorCode) {
	if int(code) < len(m.errors) && m.errors[code] != nil {
		m.errors[code].Inc()
	}
}

// observeCommit is the store's OnCommit hook.
func (m *metrics) observeCommit(wait, d time.Duration, ops int, err error) {
	m.commitWait.Observe(wait.Seconds())
	m.commitSeconds.Observe(d.Seconds())
	m.commitOps.Observe(float64(ops))
	if err != nil {
		m.commitErrors.Inc()
	}
}

// observeTrim is the store's OnTrim hook.
func (m *metrics) observeTrim(_ int64, _ time.Duration, err error) {
	if err != nil {
		m.trimErrors.Inc()
		return
	}
	m.trims.Inc()
}

// storeCollector reports the store's contents and size when scraped: the
// counts are those the commit loop keeps (no walk of the file), the sizes
// come from the file's size and bbolt's statistics.
type storeCollector struct{ r *Relay }

var (
	descQueues = prometheus.NewDesc("hush_relay_queues", "Queues in the store.", nil, nil)
	descStored = prometheus.NewDesc("hush_relay_messages_stored", "Undelivered messages in the store.", nil, nil)
	descSize   = prometheus.NewDesc("hush_relay_store_size_bytes", "Size of the store file.", nil, nil)
	descFree   = prometheus.NewDesc("hush_relay_store_free_bytes", "Free space inside the store file, which compact reclaims.", nil, nil)
	descBytes  = prometheus.NewDesc("hush_relay_stored_bytes", "What the stored-bytes cap bounds: the bytes of the messages held (bodies plus 64 bytes each) and 256 per queue.", nil, nil)
)

func (c storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descQueues
	ch <- descStored
	ch <- descSize
	ch <- descFree
	ch <- descBytes
}

func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.r.store
	n := st.total.snapshot()
	ch <- prometheus.MustNewConstMetric(descQueues, prometheus.GaugeValue, float64(n.queues))
	ch <- prometheus.MustNewConstMetric(descStored, prometheus.GaugeValue, float64(n.messages))
	ch <- prometheus.MustNewConstMetric(descBytes, prometheus.GaugeValue, float64(n.bytes+n.queues*queueCost))
	if size, free, err := st.sizes(); err == nil {
		ch <- prometheus.MustNewConstMetric(descSize, prometheus.GaugeValue, float64(size))
		ch <- prometheus.MustNewConstMetric(descFree, prometheus.GaugeValue, float64(free))
	}
}

// forwardRefusal is why a destination refused a forwarded command.
type forwardRefusal int

const (
	refusedOpen forwardRefusal = iota
	refusedReplay
	refusedTime
	refusedFull
	forwardRefusalCount
)

func (w forwardRefusal) String() string {
	return [...]string{"open", "replay", "time", "full"}[w]
}
