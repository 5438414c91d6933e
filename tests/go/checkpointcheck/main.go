// Command checkpointcheck checks activitylog's signed checkpoints and Merkle proofs with code the service
// did not write: Go's golang.org/x/mod/sumdb/note (C2SP signed notes) and golang.org/x/mod/sumdb/tlog
// (RFC 6962 trees), as the Go checksum database's own clients use them.
//
//	checkpointcheck -vkey VKEY_FILE [PROOFS.json | -]
//
// VKEY_FILE holds the note verifier key (<name>+<hex id>+<base64 key>), obtained out of band. The JSON
// document (a file, or standard input) is
//
//	{"checkpoints": ["<signed note>", …],
//	 "consistency": [{"old_size": M, "tree_size": N, "hashes": ["<b64>", …]}, …],
//	 "inclusion":   [{"seq": S, "tree_size": N, "entry_hash": "<hex>", "leaf_hash": "<b64>",
//	                  "hashes": ["<b64>", …]}, …]}
//
// Every checkpoint must be signed by the key and name the key's origin; every proof must refer to the
// size of a checkpoint given and lead to its root. The leaf of entry S is tlog.RecordHash of the 32 raw
// bytes of its hash. Exit 0 when everything holds, 1 when something does not, 2 when the input cannot
// be read; one line on standard error says which.
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type consistency struct {
	OldSize  int64    `json:"old_size"`
	TreeSize int64    `json:"tree_size"`
	Hashes   []string `json:"hashes"`
}

type inclusion struct {
	Seq       int64    `json:"seq"`
	LeafIndex *int64   `json:"leaf_index"`
	TreeSize  int64    `json:"tree_size"`
	EntryHash string   `json:"entry_hash"`
	LeafHash  string   `json:"leaf_hash"`
	Hashes    []string `json:"hashes"`
}

type input struct {
	Checkpoints []string      `json:"checkpoints"`
	Consistency []consistency `json:"consistency"`
	Inclusion   []inclusion   `json:"inclusion"`
}

type failure struct {
	code int
	msg  string
}

func unreadable(format string, args ...any) failure { return failure{2, fmt.Sprintf(format, args...)} }
func rejected(format string, args ...any) failure   { return failure{1, fmt.Sprintf(format, args...)} }

func main() {
	vkeyFile := flag.String("vkey", "", "file holding the note verifier key (obtained out of band)")
	flag.Parse()
	summary, fail := run(*vkeyFile, flag.Args())
	if fail != nil {
		word := map[int]string{1: "REJECTED", 2: "UNREADABLE"}[fail.code]
		fmt.Fprintf(os.Stderr, "%s: %s\n", word, fail.msg)
		os.Exit(fail.code)
	}
	fmt.Println("OK: " + summary)
}

func run(vkeyFile string, args []string) (string, *failure) {
	if vkeyFile == "" || len(args) > 1 {
		f := unreadable("usage: checkpointcheck -vkey VKEY_FILE [PROOFS.json | -]")
		return "", &f
	}
	vkey, err := os.ReadFile(vkeyFile)
	if err != nil {
		f := unreadable("verifier key: %v", err)
		return "", &f
	}
	verifier, err := note.NewVerifier(strings.TrimSpace(string(vkey)))
	if err != nil {
		f := unreadable("verifier key: %v", err)
		return "", &f
	}
	var raw []byte
	if len(args) == 0 || args[0] == "-" {
		raw, err = io.ReadAll(os.Stdin)
	} else {
		raw, err = os.ReadFile(args[0])
	}
	if err != nil {
		f := unreadable("proofs: %v", err)
		return "", &f
	}
	var in input
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		f := unreadable("proofs: not the expected JSON: %v", err)
		return "", &f
	}
	if len(in.Checkpoints) == 0 {
		f := unreadable("proofs: no checkpoint given")
		return "", &f
	}
	if f := check(verifier, in); f != nil {
		return "", f
	}
	return fmt.Sprintf("%d checkpoints signed by %s, %d consistency and %d inclusion proofs hold",
		len(in.Checkpoints), verifier.Name(), len(in.Consistency), len(in.Inclusion)), nil
}

func check(verifier note.Verifier, in input) *failure {
	roots := map[int64]tlog.Hash{}
	for i, text := range in.Checkpoints {
		size, root, f := openCheckpoint(verifier, text)
		if f != nil {
			f.msg = fmt.Sprintf("checkpoint %d: %s", i+1, f.msg)
			return f
		}
		if seen, ok := roots[size]; ok && seen != root {
			f := rejected("two checkpoints of tree size %d with different roots: the log forked", size)
			return &f
		}
		roots[size] = root
	}
	rootOf := func(what string, size int64) (tlog.Hash, *failure) {
		root, ok := roots[size]
		if !ok {
			f := unreadable("%s: no checkpoint of tree size %d given", what, size)
			return tlog.Hash{}, &f
		}
		return root, nil
	}
	for _, c := range in.Consistency {
		what := fmt.Sprintf("consistency %d -> %d", c.OldSize, c.TreeSize)
		oldRoot, f := rootOf(what, c.OldSize)
		if f != nil {
			return f
		}
		newRoot, f := rootOf(what, c.TreeSize)
		if f != nil {
			return f
		}
		proof, f := hashes(what, c.Hashes)
		if f != nil {
			return f
		}
		if err := tlog.CheckTree(tlog.TreeProof(proof), c.TreeSize, newRoot, c.OldSize, oldRoot); err != nil {
			f := rejected("%s: the tree of size %d does not extend the one of size %d: %v",
				what, c.TreeSize, c.OldSize, err)
			return &f
		}
	}
	for _, p := range in.Inclusion {
		what := fmt.Sprintf("inclusion of seq %d in tree %d", p.Seq, p.TreeSize)
		if p.Seq < 1 || (p.LeafIndex != nil && *p.LeafIndex != p.Seq-1) {
			f := rejected("%s: leaf index is not seq - 1", what)
			return &f
		}
		root, f := rootOf(what, p.TreeSize)
		if f != nil {
			return f
		}
		data, err := hex.DecodeString(p.EntryHash)
		if err != nil || len(data) != tlog.HashSize {
			f := unreadable("%s: entry_hash is not 64 hex digits", what)
			return &f
		}
		proof, f := hashes(what, p.Hashes)
		if f != nil {
			return f
		}
		leaf := tlog.RecordHash(data)
		if err := tlog.CheckRecord(tlog.RecordProof(proof), p.TreeSize, root, p.Seq-1, leaf); err != nil {
			f := rejected("%s: the audit path does not lead from this entry to the signed root: %v", what, err)
			return &f
		}
		if p.LeafHash != "" && p.LeafHash != base64.StdEncoding.EncodeToString(leaf[:]) {
			f := rejected("%s: the service's leaf_hash is not SHA-256(0x00 || entry hash)", what)
			return &f
		}
	}
	return nil
}

// openCheckpoint verifies the note's signature with note.Open and reads its tlog-checkpoint body:
// origin, tree size, base64 root hash (tlog.ParseTree wants the go.sum header, so it is parsed here).
func openCheckpoint(verifier note.Verifier, text string) (int64, tlog.Hash, *failure) {
	n, err := note.Open([]byte(text), note.VerifierList(verifier))
	if err != nil {
		f := rejected("the signature does not verify with the verifier key: %v", err)
		return 0, tlog.Hash{}, &f
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 || lines[len(lines)-1] != "" {
		f := rejected("the body is not origin, tree size and root hash lines")
		return 0, tlog.Hash{}, &f
	}
	if lines[0] != verifier.Name() {
		f := rejected("the checkpoint's origin %q is not the verifier key's %q", lines[0], verifier.Name())
		return 0, tlog.Hash{}, &f
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 1 || strconv.FormatInt(size, 10) != lines[1] {
		f := rejected("the tree size %q is not a positive decimal", lines[1])
		return 0, tlog.Hash{}, &f
	}
	root, err := tlog.ParseHash(lines[2])
	if err != nil {
		f := rejected("the root hash %q is not 32 bytes of base64", lines[2])
		return 0, tlog.Hash{}, &f
	}
	return size, root, nil
}

func hashes(what string, encoded []string) ([]tlog.Hash, *failure) {
	out := make([]tlog.Hash, len(encoded))
	for i, s := range encoded {
		h, err := tlog.ParseHash(s)
		if err != nil {
			f := unreadable("%s: hash %d is not 32 bytes of base64", what, i+1)
			return nil, &f
		}
		out[i] = h
	}
	return out, nil
}
