// Package ratchet is hush's end-to-end encryption between two contacts: an
// X3DH-style key agreement over per-contact X25519 keys, made hybrid with
// ML-KEM-768, that seeds a double ratchet with encrypted headers (the
// "Double Ratchet with header encryption" of the Signal specification).
// Every message is exactly MessageSize bytes, whatever its plaintext.
//
// # Flow
//
// The inviter calls NewInviterKeys and puts PublicKeys into the invitation
// link, keeping the InviterKeys (MarshalBinary) until the link is used. The
// joiner calls Join with those public keys, encrypts its first message
// with the returned Ratchet, and sends the hello together with that
// message. The inviter calls Accept with the hello and decrypts the
// message; from then on both sides Encrypt and Decrypt freely. The joiner
// is the first sender (Alice in the Signal documents, with the inviter's
// ratchet key as Bob's signed prekey); the inviter cannot Encrypt before
// it has decrypted one message (ErrNotReady).
//
// # Encodings
//
// All integers are big-endian. X25519 public keys are 32 bytes and must
// be canonical (below 2^255-19, top bit clear) in public keys and hellos.
//
//	public keys (PublicKeysSize = 1249 bytes):
//	  version     uint8 = 1
//	  IK_inviter  [32] identity X25519 public key
//	  RK_inviter  [32] initial ratchet X25519 public key
//	  KEM_inviter [1184] ML-KEM-768 encapsulation key
//
//	hello (HelloSize = 1153 bytes):
//	  version     uint8 = 1
//	  IK_joiner   [32] identity X25519 public key
//	  EK_joiner   [32] ephemeral X25519 public key
//	  KEM_ct      [1088] ML-KEM-768 ciphertext to KEM_inviter
//
//	message (MessageSize = 14500 bytes):
//	  header nonce [24] random
//	  header       [56] XChaCha20-Poly1305(key = HKs, header nonce, ad = AD) of
//	                  DHs   [32] the sender's current ratchet public key
//	                  PN    uint32 number of messages in the sender's previous sending chain
//	                  N     uint32 number of this message in the current sending chain
//	  body         [14420] XChaCha20-Poly1305(key = MK_key, nonce = MK_nonce,
//	               ad = AD | header nonce | header) of
//	                  len   uint16, 0..MaxPlaintext
//	                  plaintext [len]
//	                  zeros up to MaxPlaintext
//
// So MaxPlaintext = 14500 - 80 - 2 - 16 = 14402.
//
// # Key agreement
//
// The joiner generates an identity key IK_joiner and an ephemeral key
// EK_joiner, encapsulates to KEM_inviter (shared secret SS_kem, ciphertext
// KEM_ct), and computes
//
//	DH1 = X25519(IK_joiner, RK_inviter)
//	DH2 = X25519(EK_joiner, IK_inviter)
//	DH3 = X25519(EK_joiner, RK_inviter)
//	SK  = HKDF-SHA256(salt = 32 zero bytes,
//	                  ikm = 32 bytes 0xFF | DH1 | DH2 | DH3 | SS_kem,
//	                  info = "hush/1 x3dh", length = 96)
//	RK0 = SK[0:32]   the initial root key
//	HKa = SK[32:64]  the joiner's first sending header key (the inviter's first receiving one)
//	NHKb = SK[64:96] the inviter's first sending header key (the joiner's first "next" receiving one)
//	AD  = IK_joiner | IK_inviter (64 bytes, the public keys)
//
// The inviter computes the same values with its private keys. An X25519
// result of all zeros (a low-order public key) is refused with ErrSyntax.
// Altering any byte of a hello either makes Accept fail (ErrSyntax) or
// yields different keys, so the joiner's first message does not decrypt
// (ErrDecrypt).
//
// # Ratchet
//
// The ratchet is the Signal specification's RatchetInitAliceHE (joiner:
// SK = RK0, shared_hka = HKa, shared_nhkb = NHKb, Bob's key = RK_inviter)
// and RatchetInitBobHE (inviter, with its ratchet key pair RK_inviter),
// with these functions:
//
//	KDF_RK(rk, dh)  = HKDF-SHA256(salt = rk, ikm = dh, info = "hush/1 ratchet", length = 96)
//	                  split into new root key [0:32], chain key [32:64], next header key [64:96]
//	KDF_CK(ck)      : message key MK = HMAC-SHA256(ck, 0x01), next chain key = HMAC-SHA256(ck, 0x02)
//	MK_key|MK_nonce = HKDF-SHA256(salt = none (32 zero bytes), ikm = MK,
//	                              info = "hush/1 message" | header nonce [24], length = 56)
//	                  split into the 32-byte body key and the 24-byte body nonce
//
// The body key and nonce depend on the message's random header nonce as
// well as on MK. A state restored from an older copy (a backup of the
// local store, a virtual machine snapshot) derives message keys that were
// used before, but every message it encrypts draws a new header nonce, so
// no (body key, body nonce) pair is ever used twice; the peer decrypts the
// first message sent under such an MK and reports later ones as
// duplicates (ErrDuplicate). The header key HKs is used for many messages
// by design: its nonce is the random header nonce.
//
// Each DH ratchet step generates a fresh X25519 ratchet key. Decrypt tries
// the header under the current receiving header key HKr, under the header
// keys that have skipped message keys stored, under the next header key
// NHKr (which starts a DH ratchet step), and under the previous receiving
// header key (to tell duplicates of the previous chain from forgeries).
//
// # Skipped message keys
//
// Message keys of messages not yet received (a gap in a chain, or the end
// of a previous chain announced by PN) are stored, with their header key,
// so that late messages still decrypt; each stored key is deleted when
// used. At most MaxSkip keys are skipped within one chain, and at most
// MaxSkip are stored in total. A message that would need more fails with
// ErrTooManySkipped and leaves the state unchanged; stored keys are never
// evicted, so messages that are lost for good keep their share of the
// budget.
//
// # Randomness
//
// Randomness is read from crypto/rand in this order (the order is part of
// the test vectors in testdata/vectors.json): NewInviterKeys reads the
// inviter's identity key (32), ratchet key (32) and ML-KEM seed (64); Join
// reads IK_joiner (32), EK_joiner (32), then encapsulates (crypto/mlkem's
// own randomness), then reads the first ratchet key (32); Encrypt reads the
// header nonce (24); a Decrypt that makes a DH ratchet step reads the new
// ratchet key (32). X25519 private keys are the 32 bytes as read.
//
// # State
//
// Ratchet.MarshalBinary encodes the whole state (version 1); the encoding
// is canonical, and UnmarshalRatchet accepts only canonical encodings:
//
//	version uint8 = 1
//	flags   uint8: 0x01 sending chain (DHr, CKs, HKs present),
//	               0x02 receiving chain (CKr, HKr present; requires 0x01),
//	               0x04 previous receiving header key present (requires 0x02)
//	AD [64] | DHs private [32] | RK [32] | NHKs [32] | NHKr [32] | Ns | PN | Nr (uint32 each)
//	if 0x01: DHr [32] | CKs [32] | HKs [32]   (else Ns = PN = 0)
//	if 0x02: CKr [32] | HKr [32]              (else Nr = 0)
//	if 0x04: previous HKr [32]
//	groups uint16, then for each header key with stored message keys, in
//	increasing byte order of the header key:
//	  HK [32] | count uint16 (at least 1) | count × (N uint32 | MK [32]), N increasing
//	(at most MaxSkip message keys in total, no N equal to 2^32-1, and in the
//	group of HKr only N below Nr), and nothing after.
//
// InviterKeys.MarshalBinary is version uint8 = 1 | identity private [32] |
// ratchet private [32] | ML-KEM-768 seed [64] (129 bytes).
//
// The post-quantum protection covers the initial agreement only: later DH
// ratchet steps are X25519 alone.
package ratchet
