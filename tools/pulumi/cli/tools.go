//go:build tools

// Package tools pins the Pulumi CLI as a dependency of this module, so that
// `go build github.com/pulumi/pulumi/pkg/v3/cmd/pulumi` builds it with the
// versions in go.mod/go.sum (pkg/v3 has replace lines, so `go install pkg@v`
// refuses it).
package tools

import (
	_ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
)
