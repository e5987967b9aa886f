#!/usr/bin/env bash
# The Debian packages PDFs need: CJK fonts (WenQuanYi Micro Hei draws most text, fast; Noto Sans
# CJK the characters it lacks, such as 䶮 of CJK Extension A) and HarfBuzz subsetting. Installed
# when this machine lets us (root or passwordless sudo); otherwise say what is missing and carry
# on: intake does not need them.
set -u
need=()
for pkg in fonts-wqy-microhei fonts-noto-cjk libharfbuzz-subset0; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else
  echo "kaohe: missing Debian packages ${need[*]} (needed for PDF output); install them as root." >&2
  exit 0
fi
echo "kaohe: installing ${need[*]}"
$sudo apt-get update -qq >/dev/null 2>&1 || true
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
  || echo "kaohe: could not install ${need[*]}; PDF output will lack them" >&2
exit 0
