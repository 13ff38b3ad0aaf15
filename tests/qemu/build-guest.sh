#!/bin/sh
# Build (idempotently) the guest for the vtpmd QEMU end-to-end test:
#   * installs qemu-system-x86, busybox-static, cpio, gzip from Debian (apt),
#   * fetches a Debian kernel package (default linux-image-cloud-amd64; it has
#     tpm, tpm_tis and tpm_crb built in) with `apt-get download` and unpacks it
#     into the cache with dpkg-deb -x -- nothing is installed into /boot and no
#     host initramfs/bootloader hooks run,
#   * builds a tiny busybox initramfs whose /init is guest-init.sh.
#
# Output (cache dir: $VTPMD_QEMU_CACHE, default /var/cache/vtpmd-qemu):
#   $CACHE/vmlinuz        -> the kernel
#   $CACHE/initramfs.img  -> the initramfs
#   $CACHE/guest.env      KERNEL=, INITRD=, KVER=, KPKG= (read by boot-test.py)
#
# Environment:
#   VTPMD_QEMU_CACHE          cache directory
#   VTPMD_QEMU_KERNEL_FLAVOUR cloud-amd64 (default) or amd64
#   VTPMD_QEMU_NO_APT=1       never call apt-get (fail if something is missing)
#   VTPMD_QEMU_TPM_MODULES    modules to put in the initramfs if the kernel has
#                             them as =m (default: tpm tpm_tis_core tpm_tis tpm_crb)
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${VTPMD_QEMU_CACHE:-/var/cache/vtpmd-qemu}
FLAVOUR=${VTPMD_QEMU_KERNEL_FLAVOUR:-cloud-amd64}
NO_APT=${VTPMD_QEMU_NO_APT:-0}
TPM_MODULES=${VTPMD_QEMU_TPM_MODULES:-tpm tpm_tis_core tpm_tis tpm_crb}

log() { echo "build-guest: $*" >&2; }
die() { echo "build-guest: ERROR: $*" >&2; exit 1; }

mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)

# One builder at a time per cache dir.
if command -v flock >/dev/null 2>&1 && [ -z "${VTPMD_QEMU_LOCKED:-}" ]; then
    export VTPMD_QEMU_LOCKED=1
    exec flock "$CACHE/.lock" sh "$0" "$@"
fi

APT_UPDATED=0
apt_update_once() {
    if [ $APT_UPDATED = 0 ]; then
        log "apt-get update"
        apt-get update -qq >&2 || die "apt-get update failed"
        APT_UPDATED=1
    fi
}
has_candidate() {
    c=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')
    [ -n "$c" ] && [ "$c" != "(none)" ]
}
installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

# ---- 1. host packages -------------------------------------------------------
missing=""
for p in qemu-system-x86 busybox-static cpio gzip; do
    installed "$p" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    [ "$NO_APT" = 1 ] && die "missing packages:$missing (VTPMD_QEMU_NO_APT=1)"
    [ "$(id -u)" = 0 ] || die "missing packages:$missing; run as root or apt-get install them"
    for p in $missing; do has_candidate "$p" || apt_update_once; done
    log "apt-get install$missing"
    # shellcheck disable=SC2086  # $missing is a word list
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >&2 \
        || die "apt-get install failed"
else
    log "host packages present (qemu-system-x86 busybox-static cpio gzip)"
fi
BUSYBOX=$(command -v busybox || true)
[ -n "$BUSYBOX" ] || BUSYBOX=/bin/busybox
file_is_static() { ! LC_ALL=C ldd "$1" >/dev/null 2>&1; }
file_is_static "$BUSYBOX" || die "$BUSYBOX is not statically linked (need busybox-static)"

# ---- 2. kernel --------------------------------------------------------------
# Resolve the meta package to the versioned image package.
META=linux-image-$FLAVOUR
has_candidate "$META" || { [ "$NO_APT" = 1 ] || apt_update_once; }
KPKG=$(apt-cache depends "$META" 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
if [ -z "$KPKG" ]; then
    # Offline fallback: reuse whatever this cache already holds.
    KPKG=""
    for d in "$CACHE"/kernel/linux-image-*-"$FLAVOUR"; do
        [ -d "$d" ] && KPKG=${d##*/}
    done
    [ -n "$KPKG" ] || die "cannot resolve $META to a linux-image package"
fi
KDIR=$CACHE/kernel/$KPKG
if ! ls "$KDIR"/boot/vmlinuz-* >/dev/null 2>&1; then
    [ "$NO_APT" = 1 ] && die "kernel $KPKG not in cache (VTPMD_QEMU_NO_APT=1)"
    mkdir -p "$CACHE/debs"
    chmod 0777 "$CACHE/debs" 2>/dev/null || true   # let apt's _apt user write
    log "apt-get download $KPKG"
    (cd "$CACHE/debs" && apt-get download "$KPKG" >&2) || die "apt-get download $KPKG failed"
    DEB=$(ls -1t "$CACHE/debs/${KPKG}"_*.deb | head -n1)
    rm -rf "$KDIR.tmp"
    mkdir -p "$KDIR.tmp"
    dpkg-deb -x "$DEB" "$KDIR.tmp" || die "dpkg-deb -x $DEB failed"
    rm -rf "$KDIR"
    mv "$KDIR.tmp" "$KDIR"
    log "unpacked $(basename "$DEB") ($(du -sh "$DEB" | cut -f1) .deb, $(du -sh "$KDIR" | cut -f1) unpacked)"
else
    log "kernel $KPKG already in cache"
fi
VMLINUZ=$(ls -1 "$KDIR"/boot/vmlinuz-* | head -n1)
KVER=${VMLINUZ##*/vmlinuz-}
CONFIG=$KDIR/boot/config-$KVER
MODDIR=$KDIR/lib/modules/$KVER
[ -r "$CONFIG" ] || die "no $CONFIG"

cfg() { sed -n "s/^CONFIG_$1=//p" "$CONFIG"; }
for opt in TCG_TPM TCG_TIS_CORE TCG_TIS TCG_CRB; do
    v=$(cfg $opt)
    log "kernel $KVER: CONFIG_$opt=${v:-n}"
    case "$v" in y|m) ;; *) die "kernel $KVER lacks CONFIG_$opt (try VTPMD_QEMU_KERNEL_FLAVOUR=amd64)" ;; esac
done
for opt in DEVTMPFS BLK_DEV_INITRD RD_GZIP SERIAL_8250_CONSOLE; do
    [ "$(cfg $opt)" = y ] || die "kernel $KVER lacks CONFIG_$opt=y"
done

# ---- 3. initramfs -----------------------------------------------------------
# Rebuild only when an input changed.
STAMP_IN=$( {
    echo "$KPKG $KVER $TPM_MODULES"
    sha256sum "$HERE/guest-init.sh" "$HERE/build-guest.sh" "$BUSYBOX" | cut -d' ' -f1
} | sha256sum | cut -d' ' -f1)
INITRD=$CACHE/initramfs-$KVER.img
if [ -s "$INITRD" ] && [ "$(cat "$INITRD.stamp" 2>/dev/null)" = "$STAMP_IN" ]; then
    log "initramfs up to date: $INITRD"
else
    STAGE=$(mktemp -d "$CACHE/stage.XXXXXX")
    trap 'rm -rf "$STAGE"' EXIT INT TERM
    mkdir -p "$STAGE/bin" "$STAGE/sbin" "$STAGE/etc" "$STAGE/proc" "$STAGE/sys" \
        "$STAGE/dev" "$STAGE/tmp" "$STAGE/lib/modules" "$STAGE/root"
    cp "$BUSYBOX" "$STAGE/bin/busybox"
    for a in $("$BUSYBOX" --list); do
        [ "$a" = busybox ] || ln -s busybox "$STAGE/bin/$a"
    done
    cp "$HERE/guest-init.sh" "$STAGE/init"
    chmod 0755 "$STAGE/init" "$STAGE/bin/busybox"
    # The kernel opens /dev/console for init before devtmpfs is mounted.
    if [ "$(id -u)" = 0 ]; then
        mknod -m 600 "$STAGE/dev/console" c 5 1
        mknod -m 666 "$STAGE/dev/null" c 1 3
    fi

    # TPM drivers that are modules (=m) go in with their dependencies,
    # listed in load order in /etc/vtpm-modules.
    : >"$STAGE/etc/vtpm-modules"
    # Debian's kernel packages ship no modules.dep (their postinst runs
    # depmod); generate it inside the cache's copy of the tree.
    if [ -d "$MODDIR/kernel" ] && [ ! -s "$MODDIR/modules.dep" ]; then
        if command -v depmod >/dev/null 2>&1; then
            depmod -b "$KDIR" "$KVER"
        else
            "$BUSYBOX" depmod -b "$KDIR" "$KVER"
        fi
    fi
    want=""
    # add_mod REL: REL's dependencies (recursively) first, then REL.
    add_mod() {
        case " $want " in *" $1 "*) return 0 ;; esac
        want="$want $1"   # mark early: stops cycles
        for _d in $(grep -E "^$1:" "$MODDIR/modules.dep" | cut -d: -f2); do
            add_mod "$_d"
        done
        order="$order $1"
    }
    order=""
    if [ -s "$MODDIR/modules.dep" ]; then
        for m in $TPM_MODULES; do
            rel=$(grep -E "(^|/)$m\\.ko(\\.xz|\\.zst|\\.gz)?:" "$MODDIR/modules.dep" | head -n1 | cut -d: -f1)
            [ -n "$rel" ] && add_mod "$rel"
        done
    fi
    want=$order
    for rel in $want; do
        dst=$STAGE/lib/modules/${rel%.xz}
        dst=${dst%.zst}; dst=${dst%.gz}
        mkdir -p "$(dirname "$dst")"
        case "$rel" in
            *.xz) xz -dc "$MODDIR/$rel" >"$dst" ;;
            *.zst) zstd -qdc "$MODDIR/$rel" >"$dst" ;;
            *.gz) gzip -dc "$MODDIR/$rel" >"$dst" ;;
            *) cp "$MODDIR/$rel" "$dst" ;;
        esac
        echo "${dst#"$STAGE"/lib/modules/}" >>"$STAGE/etc/vtpm-modules"
        log "module into initramfs: $rel"
    done
    [ -s "$STAGE/etc/vtpm-modules" ] || log "no TPM modules needed (drivers built in)"

    (cd "$STAGE" && find . -print | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) \
        | gzip -9 >"$INITRD.tmp"
    mv "$INITRD.tmp" "$INITRD"
    echo "$STAMP_IN" >"$INITRD.stamp"
    rm -rf "$STAGE"
    trap - EXIT INT TERM
    log "built $INITRD ($(du -h "$INITRD" | cut -f1))"
fi

ln -sfn "$VMLINUZ" "$CACHE/vmlinuz"
ln -sfn "$INITRD" "$CACHE/initramfs.img"
cat >"$CACHE/guest.env.tmp" <<EOF
KERNEL=$VMLINUZ
INITRD=$INITRD
KVER=$KVER
KPKG=$KPKG
EOF
mv "$CACHE/guest.env.tmp" "$CACHE/guest.env"
log "ready: KERNEL=$VMLINUZ INITRD=$INITRD"
