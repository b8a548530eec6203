#!/usr/bin/env bash
# Installs the Debian packages StreetScan's tests use: a real redis-server and ffmpeg.
# Needs root (or sudo); does nothing when they are already there.
set -euo pipefail
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v ffmpeg >/dev/null || need+=(ffmpeg)
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing Debian packages: ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
