"""CopyToRemote over an SSH session: constant POSIX sh scripts that write the session's stdin into place."""

from __future__ import annotations

import shlex

# -- CopyToRemote -------------------------------------------------------------------------------------------
# The provider copies with SFTP. We stream the bytes on the session's stdin into a small constant script run by
# `sh -c SCRIPT copy-to-remote ARGS...`: values travel as quoted arguments, never inside the script text, and
# the script is the same POSIX sh whatever the remote user's login shell is. It keeps the provider's path rules
# (copied into an existing directory; parents created, as from 1.2.1 on).
# `set -eu` without pipefail on purpose: dash (Debian's sh) has no pipefail, and these scripts have no pipes.

COPY_FILE_SCRIPT = """\
set -eu
dest=$1
name=$2
if [ -d "$dest" ]; then
  if [ -z "$name" ]; then
    echo "remote path $dest is a directory, and a text source has no file name to copy into it" >&2
    exit 1
  fi
  dest="$dest/$name"
fi
mkdir -p -- "$(dirname -- "$dest")"
tmp="$dest.copy-tmp.$$"
trap 'rm -f -- "$tmp"' EXIT
# Written under umask 077 and renamed into place: a reader never sees half a file or a too-open mode.
(umask 077 && cat > "$tmp")
if [ -f "$dest" ]; then chmod --reference="$dest" -- "$tmp"; else chmod 644 -- "$tmp"; fi
mv -f -- "$tmp" "$dest"
trap - EXIT
"""

COPY_DIR_SCRIPT = """\
set -eu
dest=$1
name=$2
contents_only=$3
if [ -e "$dest" ] && [ ! -d "$dest" ]; then
  echo "remote path $dest exists but is not a directory" >&2
  exit 1
fi
# A source without a trailing slash is copied as a directory of that name, like `cp -r src dest/`.
if [ "$contents_only" = no ]; then dest="$dest/$name"; fi
if [ -e "$dest" ] && [ ! -d "$dest" ]; then
  echo "remote path $dest exists but is not a directory" >&2
  exit 1
fi
mkdir -p -- "$dest"
tar -x -f - --no-same-owner -C "$dest"
"""


def _sh_command(script: str, *args: str) -> str:
    return " ".join(["sh", "-c", shlex.quote(script), "copy-to-remote", *map(shlex.quote, args)])


def copy_file_script(remote_path: str, file_name: str) -> str:
    """Command that writes its stdin to remote_path (or remote_path/file_name when that is a directory)."""
    return _sh_command(COPY_FILE_SCRIPT, remote_path, file_name)


def copy_dir_script(remote_path: str, dir_name: str, contents_only: bool) -> str:
    """Command that unpacks the tar stream on its stdin under remote_path."""
    return _sh_command(COPY_DIR_SCRIPT, remote_path, dir_name, "yes" if contents_only else "no")
