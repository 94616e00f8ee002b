#!/usr/bin/env bash
# Builds the Pulumi engine tools into .tools/bin, pinned by tools/pulumi/versions.env:
#   pulumi                        the CLI (Go module proxy: pkg/v3 + sdk/v3, tools/pulumi/cli)
#   pulumi-language-python(-exec) the Python language host (main.go from a pulumi/pulumi tag,
#                                 built in tools/pulumi/langhost against pkg/sdk at the CLI's version;
#                                 the exec script comes from the sdk/v3 module)
#   pulumi-resource-command       the pulumi-command provider (source from a pulumi-command tag)
# Cached: each piece is rebuilt only when its pins, go.mod/go.sum or the Go version change
# (a stamp in .tools/stamps holds a hash of those inputs). The Go build and module caches
# stay in their default places (go env GOCACHE GOMODCACHE), shared with other Go work.
# The two git sources default to GitHub; PULUMI_LANGHOST_GIT / PULUMI_COMMAND_GIT name another
# clone or mirror (any git URL or path that has the pinned tag). FORCE=1 rebuilds everything.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
tools=${TOOLS_DIR:-$root/.tools}
bin=$tools/bin
stamps=$tools/stamps
src=$tools/src

# shellcheck source=versions.env source-path=SCRIPTDIR disable=SC1091
source "$here/versions.env"
LANGHOST_GIT=${PULUMI_LANGHOST_GIT:-$LANGHOST_GIT}
COMMAND_GIT=${PULUMI_COMMAND_GIT:-$COMMAND_GIT}

say() { echo "[tools] $*"; }
die() { echo "[tools] error: $*" >&2; exit 1; }

if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then PATH=$PATH:/usr/local/go/bin; fi
command -v go >/dev/null || die "no Go toolchain on PATH (need Go >= 1.26.6)"
command -v git >/dev/null || die "git is needed to fetch the language host and provider sources"
# No toolchain downloads; go.sum files are committed, so a build never edits go.mod/go.sum.
export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0
go_version=$(go env GOVERSION)
mkdir -p "$bin" "$stamps" "$src"

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

# checkout NAME OVERRIDE GIT TAG COMMIT PATH... -> the PATHs of TAG (checked to be COMMIT) in
# $src/NAME; OVERRIDE names the variable that points at another source.
checkout() {
    local name=$1 override=$2 url=$3 tag=$4 commit=$5 repo got
    shift 5
    repo=$src/$name.git
    if [ -d "$url" ]; then
        # A local clone or mirror is read in place (it may lack blobs the tag does not need).
        repo=$(git -C "$url" rev-parse --absolute-git-dir)
        got=$(git --git-dir="$repo" rev-parse "refs/tags/$tag^{commit}" 2>/dev/null) ||
            { echo "[tools] $url has no tag $tag" >&2; return 1; }
        [ "$got" = "$commit" ] || { echo "[tools] $url tag $tag is $got, pinned $commit" >&2; return 1; }
    fi
    [ -d "$repo" ] || git init -q --bare "$repo"
    if ! git --git-dir="$repo" cat-file -e "$commit^{commit}" 2>/dev/null; then
        say "fetching $name $tag from $url"
        git --git-dir="$repo" fetch -q --depth 1 "$url" "+refs/tags/$tag:refs/tags/$tag" ||
            { echo "[tools] cannot fetch tag $tag from $url; set $override to a clone or mirror that has it" >&2; return 1; }
        got=$(git --git-dir="$repo" rev-parse "refs/tags/$tag^{commit}")
        [ "$got" = "$commit" ] || { echo "[tools] $url tag $tag is $got, pinned $commit" >&2; return 1; }
    fi
    rm -rf "${src:?}/$name"
    mkdir -p "$src/$name"
    git --git-dir="$repo" archive "$commit" "$@" | tar -x -C "$src/$name"
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
lh_hash=$(inputs_hash langhost "$LANGHOST_TAG" "$LANGHOST_COMMIT" "$go_version" \
    "$here/langhost/go.mod" "$here/langhost/go.sum")
if fresh langhost "$lh_hash" "$bin/pulumi-language-python"; then
    say "pulumi-language-python $LANGHOST_TAG is up to date"
elif checkout pulumi PULUMI_LANGHOST_GIT "$LANGHOST_GIT" "$LANGHOST_TAG" "$LANGHOST_COMMIT" \
        sdk/python/cmd/pulumi-language-python/main.go; then
    say "building pulumi-language-python $LANGHOST_TAG against pkg/sdk $PULUMI_VERSION (~15 s once the CLI is built)"
    work=$src/langhost
    rm -rf "$work"
    mkdir -p "$work"
    cp "$src/pulumi/sdk/python/cmd/pulumi-language-python/main.go" "$here/langhost/go.mod" "$here/langhost/go.sum" "$work/"
    (cd "$work" && build_to "$bin/pulumi-language-python" -trimpath -tags osusergo,grpcnotrace \
        -ldflags "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$LANGHOST_TAG" .)
    echo "$lh_hash" > "$stamps/langhost"
else
    failed+=(pulumi-language-python)
fi

# --- the pulumi-command provider -------------------------------------------------------------
cmd_hash=$(inputs_hash command "$COMMAND_VERSION" "$COMMAND_TAG" "$COMMAND_COMMIT" "$go_version")
if fresh command "$cmd_hash" "$bin/pulumi-resource-command"; then
    say "pulumi-resource-command $COMMAND_VERSION is up to date"
elif checkout pulumi-command PULUMI_COMMAND_GIT "$COMMAND_GIT" "$COMMAND_TAG" "$COMMAND_COMMIT" provider; then
    say "building pulumi-resource-command $COMMAND_VERSION (~2 min cold)"
    (cd "$src/pulumi-command/provider" && build_to "$bin/pulumi-resource-command" -trimpath \
        -ldflags "-X github.com/pulumi/pulumi-command/provider/pkg/version.Version=$COMMAND_VERSION" \
        ./cmd/pulumi-resource-command)
    echo "$cmd_hash" > "$stamps/command"
else
    failed+=(pulumi-resource-command)
fi

if [ "${#failed[@]}" -gt 0 ]; then
    die "not built: ${failed[*]} (see above)"
fi
say "ready in ${bin#"$root"/}: $(cd "$bin" && echo pulumi*)"
