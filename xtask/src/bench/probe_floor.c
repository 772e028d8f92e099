/* What one uprobe hit costs on this kernel before any work of ours: a loop calls a function
 * whose first instruction is probed, and an eBPF program that returns at once runs at each hit.
 * `cargo xtask bench --only floor` runs it (xtask/src/bench/floor.rs).
 *
 * usage: probe_floor none|perf|multi push|nop5 CALLS
 *   none   no probe
 *   perf   a perf-event uprobe (what aya 0.14, and so alloctrace, attaches)
 *   multi  a uprobe_multi link (BPF_TRACE_UPROBE_MULTI, Linux 6.6+)
 *   push   the probed instruction is `push %rbp`, which the kernel emulates after the int3 trap
 *          (as it does the jcc and nop instructions alloctrace probes in Go)
 *   nop5   a 5-byte nop, which Linux 6.18+ turns into a call to a syscall trampoline instead
 * Prints one JSON line: the process CPU time per call (user + system: the kernel charges the
 * trap and the program to the process). Raw syscalls, so that nothing but a C compiler is needed.
 */
#define _GNU_SOURCE
#include <linux/bpf.h>
#include <linux/perf_event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

long hit_push(long x);
long hit_nop5(long x);
__asm__(".text\n"
        ".globl hit_push\n.type hit_push,@function\nhit_push:\n"
        "  push %rbp\n  pop %rbp\n  lea 1(%rdi),%rax\n  ret\n"
        ".globl hit_nop5\n.type hit_nop5,@function\nhit_nop5:\n"
        "  .byte 0x0f,0x1f,0x44,0x00,0x00\n  lea 1(%rdi),%rax\n  ret\n");

/* Not in Debian 12's UAPI headers (Linux 6.1). */
#define TRACE_UPROBE_MULTI 48

static void die(const char *what) {
  fprintf(stderr, "probe_floor: %s: %m\n", what);
  exit(1);
}

static double cpu_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

/* The file and file offset `addr` is mapped from. */
static uint64_t file_offset(void *addr, char *path, size_t size) {
  FILE *maps = fopen("/proc/self/maps", "r");
  char line[512];
  while (maps && fgets(line, sizeof line, maps)) {
    unsigned long lo, hi, off;
    char file[256] = "";
    if (sscanf(line, "%lx-%lx %*s %lx %*s %*s %255s", &lo, &hi, &off, file) >= 3 &&
        (unsigned long)addr >= lo && (unsigned long)addr < hi) {
      snprintf(path, size, "%s", file);
      return (unsigned long)addr - lo + off;
    }
  }
  die("probed function not found in /proc/self/maps");
  return 0;
}

static int load_program(uint32_t expected_attach_type) {
  struct bpf_insn insns[] = {
      {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = 0, .imm = 0},
      {.code = BPF_JMP | BPF_EXIT},
  };
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.prog_type = BPF_PROG_TYPE_KPROBE;
  attr.insn_cnt = 2;
  attr.insns = (uint64_t)(uintptr_t)insns;
  attr.license = (uint64_t)(uintptr_t) "GPL";
  attr.expected_attach_type = expected_attach_type;
  int fd = syscall(__NR_bpf, BPF_PROG_LOAD, &attr, sizeof attr);
  if (fd < 0)
    die("BPF_PROG_LOAD");
  return fd;
}

static void attach_perf(const char *path, uint64_t offset) {
  int prog = load_program(0);
  FILE *f = fopen("/sys/bus/event_source/devices/uprobe/type", "r");
  int type;
  if (!f || fscanf(f, "%d", &type) != 1)
    die("reading the uprobe PMU type");
  struct perf_event_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.size = sizeof attr;
  attr.type = type;
  attr.config1 = (uint64_t)(uintptr_t)path;
  attr.config2 = offset;
  int event = syscall(__NR_perf_event_open, &attr, getpid(), -1, -1, PERF_FLAG_FD_CLOEXEC);
  if (event < 0)
    die("perf_event_open");
  if (ioctl(event, PERF_EVENT_IOC_SET_BPF, prog) || ioctl(event, PERF_EVENT_IOC_ENABLE, 0))
    die("attaching to the perf event");
}

static void attach_multi(const char *path, uint64_t offset) {
  int prog = load_program(TRACE_UPROBE_MULTI);
  /* bpf_attr.link_create with its uprobe_multi member, laid out by hand (see above). */
  struct {
    uint32_t prog_fd, target_fd, attach_type, flags;
    uint64_t path, offsets, ref_ctr_offsets, cookies;
    uint32_t cnt, multi_flags, pid, pad;
  } attr;
  memset(&attr, 0, sizeof attr);
  uint64_t offsets[1] = {offset};
  attr.prog_fd = prog;
  attr.attach_type = TRACE_UPROBE_MULTI;
  attr.path = (uint64_t)(uintptr_t)path;
  attr.offsets = (uint64_t)(uintptr_t)offsets;
  attr.cnt = 1;
  attr.pid = getpid();
  if (syscall(__NR_bpf, BPF_LINK_CREATE, &attr, sizeof attr) < 0)
    die("BPF_LINK_CREATE (uprobe_multi)");
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: probe_floor none|perf|multi push|nop5 CALLS\n");
    return 2;
  }
  const char *mode = argv[1], *insn = argv[2];
  long calls = atol(argv[3]);
  long (*hit)(long) = strcmp(insn, "nop5") ? hit_push : hit_nop5;
  char path[256];
  uint64_t offset = file_offset((void *)hit, path, sizeof path);
  if (!strcmp(mode, "perf"))
    attach_perf(path, offset);
  else if (!strcmp(mode, "multi"))
    attach_multi(path, offset);
  /* The first hit installs the kernel's optimisation of a nop5: keep it out of the timing. */
  long sum = hit(0);
  double start = cpu_seconds();
  for (long i = 0; i < calls; i++)
    sum = hit(sum);
  double elapsed = cpu_seconds() - start;
  printf("{\"mode\":\"%s\",\"insn\":\"%s\",\"calls\":%ld,\"ns_per_call\":%.1f,\"sum\":%ld}\n",
         mode, insn, calls, elapsed * 1e9 / calls, sum);
  return 0;
}
