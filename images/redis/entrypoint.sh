#!/bin/sh
# Like the official image's entrypoint: options, or `redis-server ...`, start Redis with
# the search module loaded; any other command runs as it is.
set -e
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
  set -- redis-server "$@"
fi
if [ "$1" = "redis-server" ]; then
  shift
  case "${1:-}" in
    -v | --version | -h | --help) exec /usr/local/bin/redis-server "$@" ;;
  esac
  module=/usr/local/lib/redis/modules/redisearch.so
  if [ -n "${1:-}" ] && [ "${1#-}" = "$1" ]; then
    config="$1"  # a configuration file comes first
    shift
    exec /usr/local/bin/redis-server "$config" --loadmodule "$module" "$@"
  fi
  exec /usr/local/bin/redis-server --loadmodule "$module" "$@"
fi
exec "$@"
