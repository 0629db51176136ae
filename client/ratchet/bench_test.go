package ratchet

import (
	"testing"
)

// BenchmarkEncrypt measures Encrypt of a full-size plaintext in one
// sending chain.
func BenchmarkEncrypt(b *testing.B) {
	joiner, _ := newPair(b)
	pt := make([]byte, MaxPlaintext)
	b.SetBytes(MessageSize)
	b.ResetTimer()
	for range b.N {
		if _, err := joiner.Encrypt(pt); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecrypt measures Decrypt of full-size messages delivered in
// order in one receiving chain (no DH ratchet step). Messages are made in
// batches outside the timer.
func BenchmarkDecrypt(b *testing.B) {
	joiner, inviter := newPair(b)
	send(b, joiner, inviter, "first")
	pt := make([]byte, MaxPlaintext)
	msgs := make([][]byte, 0, 256)
	b.SetBytes(MessageSize)
	b.ResetTimer()
	for i := 0; i < b.N; {
		b.StopTimer()
		msgs = msgs[:0]
		for j := 0; j < cap(msgs) && i+j < b.N; j++ {
			m, err := joiner.Encrypt(pt)
			if err != nil {
				b.Fatal(err)
			}
			msgs = append(msgs, m)
		}
		b.StartTimer()
		for _, m := range msgs {
			if _, err := inviter.Decrypt(m); err != nil {
				b.Fatal(err)
			}
		}
		i += len(msgs)
	}
}

// BenchmarkRoundTrip measures one message each way, each Decrypt making a
// DH ratchet step: two Encrypts and two Decrypts per iteration.
func BenchmarkRoundTrip(b *testing.B) {
	joiner, inviter := newPair(b)
	pt := []byte("ping")
	for range b.N {
		m, err := joiner.Encrypt(pt)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := inviter.Decrypt(m); err != nil {
			b.Fatal(err)
		}
		m, err = inviter.Encrypt(pt)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := joiner.Decrypt(m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkJoinAccept measures the key agreement: Join and Accept.
func BenchmarkJoinAccept(b *testing.B) {
	k, err := NewInviterKeys()
	if err != nil {
		b.Fatal(err)
	}
	pub := k.PublicKeys()
	for range b.N {
		_, hello, err := Join(pub)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := k.Accept(hello); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMarshal measures MarshalBinary and UnmarshalRatchet of a state
// holding MaxSkip stored keys, the largest state.
func BenchmarkMarshal(b *testing.B) {
	joiner, inviter := newPair(b)
	var last []byte
	for range MaxSkip + 1 {
		last = encrypt(b, joiner, "x")
	}
	decrypt(b, inviter, last, "x")
	state := marshal(b, inviter)
	b.SetBytes(int64(len(state)))
	b.ResetTimer()
	for range b.N {
		s, err := inviter.MarshalBinary()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := UnmarshalRatchet(s); err != nil {
			b.Fatal(err)
		}
	}
}
