#include "tools/vtpmctl/usage.h"

namespace vtpm::ctl {

std::string_view usage_text() {
  return R"(Usage: vtpmctl [OPTIONS] COMMAND [ARGS...]

Command-line client of the vtpmd control socket.

Options (accepted before or after the command):
  --socket PATH       control socket (default: $VTPMD_SOCKET, else /run/vtpmd/control.sock)
  --json              print the daemon's result as JSON (pretty-printed)
  --timeout SECONDS   give up after SECONDS without an answer (default 60; 0 waits forever)
  -h, --help          print this help and exit
  --version           print the version and exit

Commands:
  add [--uuid U] [--tpm 2.0|1.2] [--auto-startup] [--max-command-size N]
      [--max-queued N] [--max-rate N] [--max-state-size N] [--max-connections N] [ENDPOINT...]
      [--pcr-banks sha1,sha256,sha384,sha512] [--ek rsa,ecc] [--ek-cert] [--platform-cert]
      [--vchan DOMID]
                      create an instance and print its UUID (U=$(vtpmctl add));
                      TPM 2.0 manufacture: active PCR banks, EKs from the TCG
                      templates (persistent 0x81010001 RSA, 0x81010002 ECC), EK
                      certificates (NV 0x01c00002, 0x01c0000a) and a platform
                      certificate (NV 0x01c08000) from vtpmd's local CA;
                      TPM 1.2: --ek rsa only (TPM_CreateEndorsementKeyPair), --ek-cert (NV 0x1000F000);
                      --vchan DOMID: raw TPM packets over a Xen vchan for domain DOMID
                      (needs --xen-backend on; see set)
  add --count N [options...]
                      create N instances alike (no --uuid, no ENDPOINT), one
                      UUID per line; progress on stderr when it is a terminal
  attach U ENDPOINT...
                      open swtpm-compatible endpoints for an instance:
                        --swtpm-path P   data socket P, control socket P.ctrl
                        --swtpm-port N   data on TCP N, control on N+1
                        --ctrl PATH, --data PATH, --ctrl-port N, --data-port N,
                        --bind ADDR (TCP address, default 127.0.0.1)
                      QEMU: -chardev socket,id=c,path=CTRL -tpmdev emulator,chardev=c
                      tpm2-tools: TPM2TOOLS_TCTI=swtpm:path=P (or host=..,port=N)
  detach U            close an instance's endpoints
  remove U [--force]  delete an instance; --force cancels its pending commands
  list                list all instances
  show U              show one instance
  status              show the daemon's status and engine shards
  stats [U]           command counts and latency per command class, errors by kind,
                      queues, swaps, persistence lag; with U, one instance's counters
  metrics [--instances]
                      the same as Prometheus text (--instances: per-instance series)
  hello               show the daemon's name, version and protocol
  exec U HEX... [--locality N]
                      run one TPM command and print the response as hex; the HEX
                      may be split over several arguments, or '-' reads it from stdin
  power U on|off|reset
                      power an instance on or off, or power-cycle it
  cancel U            cancel queued commands and abort the running one
  set U [--max-queued N] [--max-rate N] [--max-state-size N] [--max-connections N] [--vchan DOMID|off]
                      change an instance's limits: commands queued before `busy`,
                      commands per second before they wait, bytes its sealed
                      state may reach (0: the daemon's default); --vchan serves
                      raw TPM packets to domain DOMID over a libxenvchan server at
                      /local/domain/<vtpmd's domid>/data/vtpmd/U (off: close it)
  export U --transport-key KEYFILE --output FILE
                      write the instance (TPM state incl. PCRs, settings) to FILE,
                      encrypted under KEYFILE (>= 16 bytes: head -c 32 /dev/urandom)
  import FILE --transport-key KEYFILE
                      create the exported instance here, under its own UUID
  reseal [--pcrs SEL] [--pcr-values BANK:N=HEX,...] [--authorized]
                      reseal the master key to the TPM under a new policy (SEL e.g.
                      sha256:0,2,4,7; given values are predicted, others current),
                      e.g. before a firmware update; --authorized also accepts
                      operator-signed policies (needs --tpm-policy-key on vtpmd)
  sign-policy --key PRIVATE.pem --pcr-values BANK:N=HEX,... --output FILE [--pcrs SEL]
                      offline: sign a policy for future PCR values with the
                      operator key; put FILE in vtpmd's --tpm-signed-policies DIR
  ca-cert             print the local CA's certificate (PEM): what verifiers trust
  measure U --pcr N (--file F | --digest ALG:HEX[,ALG:HEX...] | --data S)
          [--event TEXT] [--event-type N] [--force]
                      extend PCR N in every active bank before the guest starts
                      (kernel into 4, command line and initrd into 5) and log it;
                      refused once the guest has sent commands, unless --force;
                      event type: EV_IPL in PCRs 8, 9, 12, 14, else EV_COMPACT_HASH
  eventlog U [--output FILE]
                      the TCG event log of the measurements since the last
                      power-on (binary, for tpm2_eventlog) to FILE or stdout
  reset U             re-run the TPM's power-on (a guest reboot); the event log
                      starts over
  help                print this help

Exit status:
  0  success
  1  the daemon returned an error (printed as "vtpmctl: CODE: MESSAGE")
  2  usage error: bad option or argument, invalid UUID or hex
  3  cannot connect, connection lost, timeout or malformed response
)";
}

}  // namespace vtpm::ctl
