#!/bin/sh
# Run by the provision step "user setup" as the login user, in its home folder.
set -eu
editor=nano
while [ $# -gt 0 ]; do
    case "$1" in
        --editor) editor="$2"; shift 2 ;;
        *) echo "setup-user.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
grep -qx "export EDITOR=$editor" .profile 2>/dev/null || echo "export EDITOR=$editor" >> .profile
git config --global init.defaultBranch main
echo "EDITOR=$editor for $(id -un)"
