#!/bin/sh
# /init of the vtpmd QEMU end-to-end guest (busybox only; copied into the
# initramfs by build-guest.sh).  It proves from inside the guest that the
# kernel found a TPM 2.0 and that PCR reads, PCR_Extend and GetRandom work,
# printing one "VTPM-TEST key=value" line per fact on the serial console.
# boot-test.py parses those lines and re-checks the PCR arithmetic on the host.
#
# Kernel command line parameters read by this script:
#   vtpm_digest=<64 hex>  the SHA-256 digest to extend (default: sha256("vtpmd"))
#   vtpm_pcr=<0..23>      the PCR to use (default 10)
#   vtpm_wait=<seconds>   how long to wait for the host's "reboot"/"poweroff"
#                         line on the console after the result (default 30)

# shellcheck disable=SC2059,SC2015,SC3045  # busybox ash: read -t, printf with \\x escapes
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
[ -c /dev/console ] && exec </dev/console >/dev/console 2>&1
mount -t tmpfs tmpfs /tmp
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null

say() { echo "VTPM-TEST $*"; }
FAIL=""
fail() {
    [ -n "$FAIL" ] || FAIL="$*"
    say "error=$*"
}

hex2bin() { printf "$(echo "$1" | sed 's/../\\x&/g')"; }
tohex() { od -An -v -tx1 "$1" | tr -d ' \n'; }
ishex() { # ishex STRING NCHARS
    [ "${#1}" -eq "$2" ] && [ -z "$(echo "$1" | tr -d '0-9a-f')" ]
}

# tpm_xfer CMDFILE RESPFILE: one raw command on one open of $TPMDEV.  The
# response belongs to the open file, so write and read share fd 3.
tpm_xfer() {
    exec 3<>"$TPMDEV" || return 1
    dd if="$1" bs=4096 count=1 >&3 2>/dev/null
    wrc=$?
    dd bs=4096 count=1 <&3 >"$2" 2>/dev/null
    rrc=$?
    exec 3>&-
    [ $wrc -eq 0 ] && [ $rrc -eq 0 ]
}

finish() {
    if [ -z "$FAIL" ]; then
        say "result=PASS"
    else
        say "result=FAIL $FAIL"
    fi
    echo "VTPM-LOG dmesg (tpm):"
    dmesg | grep -i -e tpm -e ima: | grep -v -i -e vtpm_ -e 'command line' | tail -n 20 | sed 's/^/VTPM-LOG /'
    # Ask the host what to do next; a missing/late answer means poweroff.
    say "waiting"
    cmd=""
    read -t "$WAIT" cmd
    case "$cmd" in
        reboot*) say "action=reboot"; sync; reboot -f ;;
        *) say "action=poweroff"; sync; poweroff -f ;;
    esac
    sleep 5
    poweroff -f
}

DIGEST=$(printf vtpmd | sha256sum | cut -d' ' -f1)
PCR=10
WAIT=30
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        vtpm_digest=*) DIGEST=$(echo "${arg#vtpm_digest=}" | tr A-F a-f) ;;
        vtpm_pcr=*) PCR=${arg#vtpm_pcr=} ;;
        vtpm_wait=*) WAIT=${arg#vtpm_wait=} ;;
    esac
done

say "start"
say "kernel=$(uname -r)"
say "uptime=$(cut -d' ' -f1 /proc/uptime)"
ishex "$DIGEST" 64 || { fail "bad_vtpm_digest"; finish; }
case "$PCR" in [0-9]|1[0-9]|2[0-3]) ;; *) fail "bad_vtpm_pcr"; finish ;; esac
say "pcr=$PCR"
say "extend_digest=$DIGEST"

# TPM drivers built as modules (not the case for Debian's 6.1 kernels, where
# tpm, tpm_tis and tpm_crb are built in): /etc/vtpm-modules lists them,
# dependencies first.
if [ -s /etc/vtpm-modules ]; then
    while read -r ko; do
        [ -n "$ko" ] || continue
        if insmod "/lib/modules/$ko" 2>/tmp/insmod.err; then
            say "module_loaded=$(basename "$ko" .ko)"
        elif ! grep -q -i exist /tmp/insmod.err; then
            say "module_error=$(basename "$ko" .ko):$(head -n1 /tmp/insmod.err | tr ' ' _)"
        fi
    done </etc/vtpm-modules
fi

# Wait for the driver to register tpm0 (it probes during boot when built in).
i=0
while [ ! -e /sys/class/tpm/tpm0 ] && [ $i -lt 150 ]; do
    usleep 100000; i=$((i + 1))
done
if [ ! -e /sys/class/tpm/tpm0 ]; then
    say "tpm0=absent"
    fail "no_tpm0"
    finish
fi
say "tpm0=present"
drv=$(readlink /sys/class/tpm/tpm0/device/driver 2>/dev/null)
say "driver=${drv##*/}"
say "uptime_tpm0=$(cut -d' ' -f1 /proc/uptime)"

if [ -r /sys/class/tpm/tpm0/tpm_version_major ]; then
    ver=$(cat /sys/class/tpm/tpm0/tpm_version_major)
elif [ -e /sys/class/tpm/tpmrm0 ] || [ -e /dev/tpmrm0 ]; then
    ver=2   # only TPM 2.0 chips get a resource manager device
else
    ver=unknown
fi
say "tpm_version=$ver"
[ "$ver" = 2 ] || { fail "not_tpm2"; finish; }

TPMDEV=/dev/tpm0
i=0
while [ ! -c $TPMDEV ] && [ $i -lt 50 ]; do usleep 100000; i=$((i + 1)); done
[ -c $TPMDEV ] || { fail "no_dev_tpm0"; finish; }
say "tpmdev=$TPMDEV"
[ -c /dev/tpmrm0 ] && say "tpmrm0=present"

PCRFILE=/sys/class/tpm/tpm0/pcr-sha256/$PCR
[ -r "$PCRFILE" ] || { fail "no_sysfs_pcr_sha256"; finish; }
before=$(tr -d ' \n' <"$PCRFILE" | tr A-F a-f)
say "pcr${PCR}_before=$before"
ishex "$before" 64 || { fail "bad_pcr_read"; finish; }

# TPM2_PCR_Extend(PCR, password session, sha256:DIGEST): 65 bytes.
#   tag 8002 | size 00000041 | cc 00000182 | handle 000000PP
#   authSize 00000009 | TPM_RS_PW 40000009, nonce 0000, attrs 00, hmac 0000
#   TPML_DIGEST_VALUES count 00000001 | alg 000b | 32-byte digest
{
    printf '\200\002\000\000\000\101\000\000\001\202\000\000\000'
    hex2bin "$(printf %02x "$PCR")"
    printf '\000\000\000\011\100\000\000\011\000\000\000\000\000'
    printf '\000\000\000\001\000\013'
    hex2bin "$DIGEST"
} >/tmp/extend.cmd
n=$(wc -c </tmp/extend.cmd)
[ "$n" -eq 65 ] || { fail "extend_cmd_size_$n"; finish; }
if tpm_xfer /tmp/extend.cmd /tmp/extend.rsp; then
    rsp=$(tohex /tmp/extend.rsp)
    say "extend_rsp=$rsp"
    rc=$(echo "$rsp" | cut -c13-20)
    if ishex "$rc" 8; then
        say "extend_rc=$((0x$rc))"
        [ "$rc" = 00000000 ] || fail "extend_rc_0x$rc"
    else
        say "extend_rc=none"
        fail "extend_short_response"
    fi
else
    say "extend_rc=io_error"
    fail "extend_io_error"
fi

expected=$({ hex2bin "$before"; hex2bin "$DIGEST"; } | sha256sum | cut -d' ' -f1)
say "pcr${PCR}_expected=$expected"
after=$(tr -d ' \n' <"$PCRFILE" | tr A-F a-f)
say "pcr${PCR}_after=$after"
if [ "$after" = "$before" ]; then
    fail "pcr_unchanged"
elif [ "$after" != "$expected" ]; then
    fail "pcr_mismatch"
fi

# TPM2_GetRandom(16), twice: tag 8001 | size 0000000c | cc 0000017b | 0010
printf '\200\001\000\000\000\014\000\000\001\173\000\020' >/tmp/getrandom.cmd
rnd1="" rnd2=""
for k in 1 2; do
    if tpm_xfer /tmp/getrandom.cmd /tmp/getrandom.rsp; then
        rsp=$(tohex /tmp/getrandom.rsp)
        rc=$(echo "$rsp" | cut -c13-20)
        len=$(echo "$rsp" | cut -c21-24)
        rnd=$(echo "$rsp" | cut -c25-)
        ishex "$rc" 8 && say "getrandom_rc=$((0x$rc))" || say "getrandom_rc=none"
        say "random$k=$rnd"
        [ "$rc" = 00000000 ] || fail "getrandom_rc_0x$rc"
        [ "$len" = 0010 ] && ishex "$rnd" 32 || fail "getrandom_bad_length"
        eval "rnd$k=\$rnd"
    else
        say "getrandom_rc=io_error"
        fail "getrandom_io_error"
    fi
done
[ -n "$rnd1" ] && [ "$rnd1" = "$rnd2" ] && fail "getrandom_repeated"

say "uptime_done=$(cut -d' ' -f1 /proc/uptime)"
finish
