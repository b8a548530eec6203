#!/usr/bin/env bash
# Installs the Debian packages StreetScan's tests use: a real redis-server, ffmpeg,
# GStreamer's RTSP server (run by the system python3 through python3-gi) to serve real H.264
# as cameras, and Chromium with its WebDriver for the console's browser tests. Needs root (or sudo); does nothing when they are already there.
set -euo pipefail
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
# A CJK font, so the zh-CN console renders (and its screenshots show) Chinese, not empty boxes.
fc-list 2>/dev/null | grep -qi 'wqy\|cjk' || need+=(fonts-wqy-microhei)
if ! /usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import Gst, GstRtspServer; Gst.init(None); assert all(Gst.ElementFactory.find(e) for e in ('qtdemux', 'h264parse', 'rtph264pay'))" 2>/dev/null; then
  need+=(python3 python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad)
fi
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing Debian packages: ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
