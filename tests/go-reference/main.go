// Command go-reference writes naming test vectors computed with Go's own standard
// library (strings.ToLower, regexp, hash/fnv), the runtime simple-container uses, so the
// Rust port is checked against Go's Unicode and regexp behaviour rather than against
// itself. The algorithm is the one in shared/spec/simple-container-compat.md.
//
// Regenerate with: cd tests/go-reference && go run . > ../data/naming-vectors.json
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand"
	"regexp"
	"strings"
)

var invalid = regexp.MustCompile(`[^a-z0-9\-]`)

func sanitize(name string) string {
	s := strings.ReplaceAll(strings.ToLower(name), "_", "-")
	s = invalid.ReplaceAllString(s, "")
	s = strings.Trim(s, "-")
	if len(s) > 63 {
		h := fnv.New32a()
		h.Write([]byte(s))
		hash := fmt.Sprintf("%04x", h.Sum32()&0xFFFF)
		prefix := strings.TrimRight(s[:58], "-")
		s = prefix + "-" + hash
	}
	return strings.ReplaceAll(s, "--", "-")
}

func generate(base, env, parent string) string {
	if parent != "" && parent != env {
		return sanitize(base + "-" + env)
	}
	return sanitize(base)
}

// Pieces are weighted toward what breaks sanitizers: case, separators, hyphen runs,
// characters whose lowercase is ASCII (U+0130, U+212A) or expands, and non-ASCII.
var pieces = []string{
	"a", "b", "z", "A", "Q", "Z", "0", "7", "9", "-", "-", "--", "---", "_", "__", ".", " ", "/",
	"app", "tenant", "prod", "Staging", "PR", "pay-space-wallet", "my_app", "MyApp",
	"İ", "\u212a", "ß", "ẞ", "Σ", "σ", "ς", "é", "É", "ñ", "ø", "ſ", "ﬀ", "Ω", "Ǆ", "ǅ", "ǆ",
	"日本", "🚀", "\u0301", "\u200b", "\t", "\n", "'", "\"", "\\", "@", "+", "=", "*",
}

func randomName(r *rand.Rand, max int) string {
	var b strings.Builder
	n := r.Intn(max)
	for i := 0; i < n; i++ {
		b.WriteString(pieces[r.Intn(len(pieces))])
	}
	return b.String()
}

type sanitizeVector struct {
	Input  string `json:"input"`
	Output string `json:"output"`
}

type namespaceVector struct {
	Base      string `json:"base"`
	StackEnv  string `json:"stack_env"`
	ParentEnv string `json:"parent_env"`
	Generated string `json:"generated"`
	Deployed  string `json:"deployed"`
}

func main() {
	r := rand.New(rand.NewSource(20261124))
	fixed := []string{
		"", "-", "--Foo_Bar--", "My.App", "a---b", "a----b", "a-----b", "İstanbul", "\u212aube",
		strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a", 200),
		strings.Repeat("ab-", 30), strings.Repeat("a-", 40), strings.Repeat("x", 57) + "---" + strings.Repeat("y", 10),
		strings.Repeat("x", 58) + "-" + strings.Repeat("y", 10), strings.Repeat("x", 57) + "-" + strings.Repeat("y", 10),
		strings.Repeat("İ", 70), strings.Repeat("A_", 40),
	}
	var sv []sanitizeVector
	for _, in := range fixed {
		sv = append(sv, sanitizeVector{in, sanitize(in)})
	}
	for i := 0; i < 2000; i++ {
		in := randomName(r, 30+r.Intn(3)*40)
		sv = append(sv, sanitizeVector{in, sanitize(in)})
	}
	envs := []string{"", "production", "staging", "tenant-a", "TenantA", "Production", "staging-pr-123", "a---b", "ß"}
	var nv []namespaceVector
	for i := 0; i < 1500; i++ {
		base := randomName(r, 40)
		env := envs[r.Intn(len(envs))]
		if r.Intn(3) == 0 {
			env = randomName(r, 12)
		}
		parent := envs[r.Intn(len(envs))]
		if r.Intn(4) == 0 {
			parent = env
		}
		g := generate(base, env, parent)
		nv = append(nv, namespaceVector{base, env, parent, g, sanitize(g)})
	}
	fmt.Printf("{\"generator\": %s,\n \"sanitize\": [\n", line("tests/go-reference (Go "+goVersion()+" standard library)"))
	for i, v := range sv {
		fmt.Printf("  %s%s\n", line(v), sep(i, len(sv)))
	}
	fmt.Printf(" ],\n \"namespace\": [\n")
	for i, v := range nv {
		fmt.Printf("  %s%s\n", line(v), sep(i, len(nv)))
	}
	fmt.Printf(" ]\n}\n")
}

// line encodes v as one line of JSON, leaving <, > and & readable.
func line(v interface{}) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func sep(i, n int) string {
	if i+1 < n {
		return ","
	}
	return ""
}
