#!/bin/sh
# Regenerates the golden files of every fixture with the real kustomize
# (kubectl v1.32 embeds kustomize v5.5.0):
#   expected.yaml        stdout of a successful build
#   expected-error.txt   stderr of a failed build (klog prefix and paths stripped)
# Usage: kustomize/testdata/regenerate.sh [CASE...]
set -eu
cd "$(dirname "$0")"
cases="${*:-$(ls -d */ | tr -d /)}"
for c in $cases; do
    entry=input
    [ -f "$c/ENTRY" ] && entry=$(cat "$c/ENTRY")
    rm -f "$c/expected.yaml" "$c/expected-error.txt"
    if (cd "$c" && kubectl kustomize "$entry" >expected.yaml 2>stderr.txt); then
        rm -f "$c/stderr.txt"
    else
        rm -f "$c/expected.yaml"
        sed -e 's/^E[0-9]* [0-9:.]* *[0-9]* [a-z_.]*:[0-9]*\] //' -e "s#$(pwd)/$c#\$CASE_DIR#g" \
            "$c/stderr.txt" >"$c/expected-error.txt"
        rm -f "$c/stderr.txt"
    fi
    echo "$c: $(ls "$c" | grep expected)"
done
