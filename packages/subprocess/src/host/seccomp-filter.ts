/**
 * The system-call filter sandboxed children run under (bubblewrap's `--seccomp`, a classic BPF
 * program): it refuses to make a file setuid or setgid. The folders a plugin may write are the
 * host's own file system, which is not mounted nosuid on the host: a program made setuid there
 * (`chmod 4755`) would let any local user who runs it act as the sandbox's uid — every plugin's
 * data, every sandboxed process — or, on a host that is not root, as the host's own user.
 * Refused with EPERM: chmod, fchmod, fchmodat(2) and mknod(at) with a setuid or setgid bit, and
 * open, openat and creat that create a file with one. openat2 (its mode in a struct the filter
 * cannot read) answers ENOSYS, as on an older kernel, so C libraries fall back to openat, and
 * io_uring (which opens files with a mode too) is not there, as where a kernel leaves it out.
 * Without `unixSockets` (a child not granted the network), `socket()` makes only Internet and
 * netlink sockets, which the sandbox's own network namespace holds (its `lo`), and answers EACCES
 * for every other family: `AF_UNIX`, because a socket file is reached through the file system,
 * not the network namespace, so a read grant that holds one (`/run`, where docker's and dbus's
 * live) would let a plugin talk to the service behind it; `AF_VSOCK`, whose ports are the
 * machine's (a VM's agents, its hypervisor), not the namespace's; and the rest, which no plugin
 * needs. `socketpair` makes stream and seqpacket pairs only (how Node wires a child's stdio):
 * a datagram pair's sockets may `sendto()` any socket file (the journal's, syslog's), and an
 * AF_UNIX `SOCK_RAW` pair is one (the kernel makes it `SOCK_DGRAM`).
 * The kernel's keyrings (add_key, request_key, keyctl) answer ENOSYS, as on a kernel built
 * without them: they are not namespaced, so a child would keep the host's session keyring
 * through bubblewrap's user namespace and possess its keys whatever its uid (a systemd
 * service's, a container's, a login shell's): read them, and leave keys there for every later
 * execution of any plugin.
 * Everything else is allowed: the sandbox's other layers do the rest.
 */

/** seccomp_data: the syscall number, the architecture, then six 64-bit arguments (the low half first on these little-endian machines). */
const NR = 0;
const ARCH = 4;
const argLow = (index: number) => 16 + 8 * index;

const LD_ABS = 0x20;
const JEQ = 0x15;
const JSET = 0x45;
const JGE = 0x35;
const AND = 0x54;
const RET = 0x06;

const ALLOW = 0x7fff0000;
const ERRNO = 0x00050000;
const EPERM = 1;
const EACCES = 13;
const ENOSYS = 38;
/** The families a child without the network may make sockets of: its namespace's own. */
const AF_INET = 2;
const AF_INET6 = 10;
const AF_NETLINK = 16;
/** The socketpair types it may make: connected pairs, which send only to each other. */
const SOCK_STREAM = 1;
const SOCK_SEQPACKET = 5;
/** The socket type in socketpair's type argument (the rest: SOCK_NONBLOCK, SOCK_CLOEXEC). */
const SOCK_TYPE_MASK = 0xf;

/** S_ISUID | S_ISGID. */
const SET_ID_BITS = 0o6000;
/** O_CREAT | __O_TMPFILE (the same on x86-64 and arm64): the flags with which open uses its mode. */
const CREATES = 0o100 | 0o20000000;

/** A call whose `modeArg` is a file mode; `flagsArg`, when given, must have CREATES set for the mode to count. */
interface ModeCall {
  nr: number;
  modeArg: number;
  flagsArg?: number;
}

interface Arch {
  audit: number;
  /** socket(2) and socketpair(2). */
  socket: number;
  socketpair: number;
  calls: ModeCall[];
  /** Calls that answer ENOSYS. */
  absent: number[];
  /** Numbers at or above this are another ABI of the same architecture (x32): refused. */
  otherAbiFrom?: number;
}

const IO_URING = [425, 426, 427];
const OPENAT2 = 437;
/** add_key, request_key, keyctl. */
const KEYRING_X64 = [248, 249, 250];
const KEYRING_ARM64 = [217, 218, 219];

const ARCHES: Record<string, Arch> = {
  x64: {
    audit: 0xc000003e,
    socket: 41,
    socketpair: 53,
    calls: [
      { nr: 90, modeArg: 1 }, // chmod
      { nr: 91, modeArg: 1 }, // fchmod
      { nr: 268, modeArg: 2 }, // fchmodat
      { nr: 452, modeArg: 2 }, // fchmodat2
      { nr: 133, modeArg: 1 }, // mknod
      { nr: 259, modeArg: 2 }, // mknodat
      { nr: 85, modeArg: 1 }, // creat
      { nr: 2, modeArg: 2, flagsArg: 1 }, // open
      { nr: 257, modeArg: 3, flagsArg: 2 }, // openat
    ],
    absent: [OPENAT2, ...IO_URING, ...KEYRING_X64],
    otherAbiFrom: 0x40000000,
  },
  arm64: {
    audit: 0xc00000b7,
    socket: 198,
    socketpair: 199,
    calls: [
      { nr: 52, modeArg: 1 }, // fchmod
      { nr: 53, modeArg: 2 }, // fchmodat
      { nr: 452, modeArg: 2 }, // fchmodat2
      { nr: 33, modeArg: 2 }, // mknodat
      { nr: 56, modeArg: 3, flagsArg: 2 }, // openat
    ],
    absent: [OPENAT2, ...IO_URING, ...KEYRING_ARM64],
  },
};

/**
 * The filter for this machine's architecture, as bytes for bubblewrap; undefined where there is
 * none (not x86-64 or arm64). `unixSockets`: the child may make Unix sockets (granted the network).
 */
export function sandboxFilter(unixSockets: boolean, arch: string = process.arch): Buffer | undefined {
  const spec = ARCHES[arch];
  return spec ? assemble(program(spec, unixSockets)) : undefined;
}

type Instruction = [code: number, jt: number, jf: number, k: number];

function program(arch: Arch, unixSockets: boolean): Instruction[] {
  const out: Instruction[] = [];
  // Labels are resolved once the program is laid out: jumps are relative, forward only.
  const fixups: Array<{ at: number; label: string; field: 1 | 2 }> = [];
  const labels = new Map<string, number>();
  const jump = (code: number, k: number, onTrue: string | 0, onFalse: string | 0) => {
    const at = out.length;
    out.push([code, 0, 0, k]);
    if (onTrue) fixups.push({ at, label: onTrue, field: 1 });
    if (onFalse) fixups.push({ at, label: onFalse, field: 2 });
  };
  out.push([LD_ABS, 0, 0, ARCH]);
  jump(JEQ, arch.audit, 0, 'eperm');
  out.push([LD_ABS, 0, 0, NR]);
  if (arch.otherAbiFrom !== undefined) jump(JGE, arch.otherAbiFrom, 'eperm', 0);
  for (const nr of arch.absent) jump(JEQ, nr, 'enosys', 0);
  if (!unixSockets) {
    jump(JEQ, arch.socket, 'socket', 0);
    jump(JEQ, arch.socketpair, 'socketpair', 0);
  }
  arch.calls.forEach((call, i) => jump(JEQ, call.nr, `call${i}`, 0));
  out.push([RET, 0, 0, ALLOW]);
  if (!unixSockets) {
    labels.set('socket', out.length);
    out.push([LD_ABS, 0, 0, argLow(0)]);
    jump(JEQ, AF_INET, 'allow', 0);
    jump(JEQ, AF_INET6, 'allow', 0);
    jump(JEQ, AF_NETLINK, 'allow', 'eacces');
    labels.set('socketpair', out.length);
    out.push([LD_ABS, 0, 0, argLow(1)]);
    out.push([AND, 0, 0, SOCK_TYPE_MASK]);
    jump(JEQ, SOCK_STREAM, 'allow', 0);
    jump(JEQ, SOCK_SEQPACKET, 'allow', 'eacces');
  }
  arch.calls.forEach((call, i) => {
    labels.set(`call${i}`, out.length);
    if (call.flagsArg !== undefined) {
      out.push([LD_ABS, 0, 0, argLow(call.flagsArg)]);
      jump(JSET, CREATES, 0, 'allow');
    }
    out.push([LD_ABS, 0, 0, argLow(call.modeArg)]);
    jump(JSET, SET_ID_BITS, 'eperm', 'allow');
  });
  labels.set('allow', out.length);
  out.push([RET, 0, 0, ALLOW]);
  labels.set('eperm', out.length);
  out.push([RET, 0, 0, ERRNO | EPERM]);
  labels.set('enosys', out.length);
  out.push([RET, 0, 0, ERRNO | ENOSYS]);
  labels.set('eacces', out.length);
  out.push([RET, 0, 0, ERRNO | EACCES]);
  for (const { at, label, field } of fixups) {
    const offset = labels.get(label)! - at - 1;
    if (offset > 255) throw new Error(`seccomp filter: a jump of ${offset} does not fit`);
    out[at]![field] = offset;
  }
  return out;
}

/** struct sock_filter { u16 code; u8 jt; u8 jf; u32 k; }, little-endian. */
function assemble(instructions: Instruction[]): Buffer {
  const bytes = Buffer.alloc(instructions.length * 8);
  instructions.forEach(([code, jt, jf, k], i) => {
    bytes.writeUInt16LE(code, i * 8);
    bytes.writeUInt8(jt, i * 8 + 2);
    bytes.writeUInt8(jf, i * 8 + 3);
    bytes.writeUInt32LE(k >>> 0, i * 8 + 4);
  });
  return bytes;
}
