#!/bin/sh
# A Helm 3 post-renderer for Helm before 3.9, which has no
# --post-renderer-args: Helm runs this file with the rendered manifests on
# stdin and installs what it prints on stdout. `rolecall inject` reads stdin,
# writes the injected manifests on stdout and its report on stderr; on an
# invalid rolecall.dev annotation it exits 64 with every problem on stderr
# and nothing on stdout, so Helm fails the release and shows the problems.
#
#   helm install shop ./chart --post-renderer ./post-renderer.sh
#
# Helm 3.9 and later need no script:
#
#   helm install shop ./chart --post-renderer rolecall --post-renderer-args inject
exec rolecall inject "$@"
