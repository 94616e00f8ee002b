#!/usr/bin/env bash
# Builds the Pulumi engine tools into .tools/bin, pinned by tools/pulumi/versions.env:
#   pulumi                        the CLI (Go module proxy: pkg/v3 + sdk/v3, tools/pulumi/cli)
#   pulumi-language-python(-exec) the Python language host (the exec script comes from the sdk/v3 module)
#   pulumi-resource-command       the pulumi-command provider
# Cached: each piece is rebuilt only when its pins, go.mod/go.sum or the Go version change
# (a stamp in .tools/stamps holds a hash of those inputs). The Go build and module caches
# stay in their default places (go env GOCACHE GOMODCACHE), shared with other Go work.
# Everything comes from the Go module proxy. The language host and pulumi-command modules are not served there
# (403 when pinned here); the script tries them, says so and exits 1 (the README says what that blocks).
# FORCE=1 rebuilds everything.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
tools=${TOOLS_DIR:-$root/.tools}
bin=$tools/bin
stamps=$tools/stamps

# shellcheck source=versions.env source-path=SCRIPTDIR disable=SC1091
source "$here/versions.env"

say() { echo "[tools] $*"; }
die() { echo "[tools] error: $*" >&2; exit 1; }

if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then PATH=$PATH:/usr/local/go/bin; fi
command -v go >/dev/null || die "no Go toolchain on PATH (need Go >= 1.26.6)"
# No toolchain downloads; go.sum files are committed, so a build never edits go.mod/go.sum.
export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0
go_version=$(go env GOVERSION)
mkdir -p "$bin" "$stamps"

# inputs_hash INPUT... -> the hash of the inputs (a file's contents, else the word itself).
inputs_hash() {
    local x
    for x in "$@"; do
        if [ -f "$x" ]; then sha256sum "$x"; else echo "$x"; fi
    done | sha256sum | cut -d' ' -f1
}
# fresh NAME HASH OUTPUT... -> true when NAME's stamp holds HASH and every output exists.
fresh() {
    local name=$1 hash=$2 out
    shift 2
    [ "${FORCE:-0}" = 1 ] && return 1
    [ "$(cat "$stamps/$name" 2>/dev/null)" = "$hash" ] || return 1
    for out in "$@"; do [ -x "$out" ] || return 1; done
}

# install_module NAME HASH OUT PKG@VERSION LDFLAGS -> `go install` of a module package from the proxy into OUT.
install_module() {
    local name=$1 hash=$2 out=$3 pkg=$4 ldflags=$5 gobin log
    gobin=$(mktemp -d "$tools/gobin.XXXXXX")
    log=$gobin/go.log
    say "building $name from ${pkg} (Go module proxy)"
    if GOFLAGS=-buildvcs=false GOBIN=$gobin go install -trimpath -tags osusergo,grpcnotrace -ldflags "$ldflags" \
            "$pkg" >"$log" 2>&1; then
        mv -f "$gobin/$name" "$out"
        echo "$hash" > "$stamps/$name"
        rm -rf "$gobin"
        return 0
    fi
    echo "[tools] $name: go install $pkg failed:" >&2
    tail -n 3 "$log" | sed 's/^/[tools]   /' >&2
    rm -rf "$gobin"
    return 1
}

# Installs a freshly built file: build into a temporary name, then rename (no half-written tool).
build_to() {
    local out=$1
    shift
    go build -o "$out.tmp" "$@" && mv -f "$out.tmp" "$out"
}

failed=()

# --- the CLI ---------------------------------------------------------------------------------
cli_hash=$(inputs_hash cli "$PULUMI_VERSION" "$go_version" "$here/cli/go.mod" "$here/cli/go.sum")
if fresh cli "$cli_hash" "$bin/pulumi" "$bin/pulumi-language-python-exec"; then
    say "pulumi $PULUMI_VERSION is up to date"
else
    pinned=$(cd "$here/cli" && go list -m -f '{{.Version}}' github.com/pulumi/pulumi/pkg/v3)
    [ "$pinned" = "$PULUMI_VERSION" ] ||
        die "tools/pulumi/cli/go.mod requires pkg/v3 $pinned, versions.env pins $PULUMI_VERSION"
    say "building pulumi $PULUMI_VERSION (cold build takes ~10 min on 2 cores and downloads ~370 MB of modules; ~20 s with a warm Go cache)"
    (cd "$here/cli" && build_to "$bin/pulumi" -trimpath -tags osusergo,grpcnotrace \
        -ldflags "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_VERSION" \
        github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)
    sdk_dir=$(cd "$here/cli" && go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)
    install -m 755 "$sdk_dir/python/cmd/pulumi-language-python-exec" "$bin/pulumi-language-python-exec"
    echo "$cli_hash" > "$stamps/cli"
fi

# --- the Python language host ----------------------------------------------------------------
lh_hash=$(inputs_hash langhost "$LANGHOST_MODULE" "$LANGHOST_VERSION" "$go_version")
if fresh pulumi-language-python "$lh_hash" "$bin/pulumi-language-python"; then
    say "pulumi-language-python $LANGHOST_VERSION is up to date"
elif ! install_module pulumi-language-python "$lh_hash" "$bin/pulumi-language-python" \
        "$LANGHOST_MODULE@$LANGHOST_VERSION" "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_VERSION"; then
    failed+=(pulumi-language-python)
fi

# --- the pulumi-command provider -------------------------------------------------------------
cmd_hash=$(inputs_hash command "$COMMAND_MODULE" "$COMMAND_MODULE_VERSION" "$COMMAND_VERSION" "$go_version")
if fresh pulumi-resource-command "$cmd_hash" "$bin/pulumi-resource-command"; then
    say "pulumi-resource-command $COMMAND_VERSION is up to date"
elif ! install_module pulumi-resource-command "$cmd_hash" "$bin/pulumi-resource-command" \
        "$COMMAND_MODULE@$COMMAND_MODULE_VERSION" \
        "-X github.com/pulumi/pulumi-command/provider/pkg/version.Version=$COMMAND_VERSION"; then
    failed+=(pulumi-resource-command)
fi

if [ "${#failed[@]}" -gt 0 ]; then
    die "not built: ${failed[*]} (not served by the Go module proxy: the local stack cannot run on the engine yet)"
fi
say "ready in ${bin#"$root"/}: $(cd "$bin" && echo pulumi*)"
