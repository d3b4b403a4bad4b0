#!/usr/bin/env bash
# render.sh -- write a runnable nginx set-up for backtrack replicas into PREFIX:
#
#   deploy/nginx/render.sh [-f FAIL_TIMEOUT] [-m MAX_FAILS] PREFIX LISTEN REPLICA...
#   nginx -p PREFIX -c PREFIX/nginx.conf -e PREFIX/error.log
#
# LISTEN and each REPLICA are HOST:PORT (for example 127.0.0.1:8080 127.0.0.1:8081
# 127.0.0.1:8082). PREFIX gets nginx.conf (stand-alone, foreground, every file under
# PREFIX) and backtrack.conf (the upstream and the server; alone it fits
# /etc/nginx/conf.d/). FAIL_TIMEOUT (default 10s) and MAX_FAILS (default 3) are the
# passive health check's: docs/scale-out.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fail_timeout=10s
max_fails=3
while getopts "f:m:" o; do
    case $o in
        f) fail_timeout=$OPTARG ;;
        m) max_fails=$OPTARG ;;
        *) exit 2 ;;
    esac
done
shift $((OPTIND - 1))
if [ $# -lt 3 ]; then
    echo "usage: render.sh [-f FAIL_TIMEOUT] [-m MAX_FAILS] PREFIX LISTEN REPLICA..." >&2
    exit 2
fi
prefix=$1
listen=$2
shift 2
hostport='^[A-Za-z0-9._-]+:[0-9]{1,5}$'
for a in "$listen" "$@"; do
    [[ $a =~ $hostport ]] || { echo "render.sh: '$a' is not HOST:PORT" >&2; exit 2; }
done
[[ $fail_timeout =~ ^[0-9]+(ms|s|m)?$ ]] || { echo "render.sh: bad -f '$fail_timeout'" >&2; exit 2; }
[[ $max_fails =~ ^[0-9]+$ ]] || { echo "render.sh: bad -m '$max_fails'" >&2; exit 2; }
# the paths are quoted in the templates: a '"' or '\' would end or escape the string,
# and nginx reads a '$' in a log path as a variable
[[ $prefix = /* ]] || prefix=$PWD/$prefix
case $prefix in *[\"\\\$]* | *$'\n'*)
    echo "render.sh: the prefix '$prefix' holds a character nginx cannot take in a path" >&2
    exit 2 ;;
esac
mkdir -p "$prefix/tmp"
prefix=$(cd "$prefix" && pwd)

servers=""
for r in "$@"; do
    servers+="    server $r max_fails=$max_fails fail_timeout=$fail_timeout;"$'\n'
done
conf=$(<"$here/backtrack.conf")
servers=${servers%$'\n'}
# the replacements quoted: bash 5.2 puts the pattern back for each unquoted '&' in them
conf=${conf//@UPSTREAMS@/"$servers"}
conf=${conf//@LISTEN@/"$listen"}
printf '%s\n' "${conf//@PREFIX@/"$prefix"}" >"$prefix/backtrack.conf"
main=$(<"$here/nginx.conf")
printf '%s\n' "${main//@PREFIX@/"$prefix"}" >"$prefix/nginx.conf"
echo "$prefix/nginx.conf"
