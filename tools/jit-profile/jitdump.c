// Dumps a loaded BPF program's JIT image and its kernel address, for tools/jit-profile/profile.sh.
// Usage: jitdump PROG_ID OUT.bin  (prints "ksym N ADDRESS len LEN" per function)
#include <linux/bpf.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
static long bpf(int cmd, union bpf_attr *a) { return syscall(__NR_bpf, cmd, a, sizeof(*a)); }
int main(int argc, char **argv) {
  union bpf_attr a; memset(&a, 0, sizeof a); a.prog_id = atoi(argv[1]);
  int fd = bpf(BPF_PROG_GET_FD_BY_ID, &a); if (fd < 0) { perror("get fd"); return 1; }
  struct bpf_prog_info info; memset(&info, 0, sizeof info);
  memset(&a, 0, sizeof a); a.info.bpf_fd = fd; a.info.info_len = sizeof info; a.info.info = (uint64_t)&info;
  if (bpf(BPF_OBJ_GET_INFO_BY_FD, &a)) { perror("info"); return 1; }
  uint32_t len = info.jited_prog_len; uint32_t nk = info.nr_jited_ksyms;
  void *buf = malloc(len); uint64_t *ks = calloc(nk, 8); uint32_t *fl = calloc(nk, 4);
  memset(&info, 0, sizeof info); info.jited_prog_len = len; info.jited_prog_insns = (uint64_t)buf;
  info.nr_jited_ksyms = nk; info.jited_ksyms = (uint64_t)ks; info.nr_jited_func_lens = nk; info.jited_func_lens = (uint64_t)fl;
  memset(&a, 0, sizeof a); a.info.bpf_fd = fd; a.info.info_len = sizeof info; a.info.info = (uint64_t)&info;
  if (bpf(BPF_OBJ_GET_INFO_BY_FD, &a)) { perror("info2"); return 1; }
  FILE *f = fopen(argv[2], "wb"); fwrite(buf, 1, len, f); fclose(f);
  for (uint32_t i = 0; i < nk; i++) printf("ksym %u 0x%llx len %u\n", i, (unsigned long long)ks[i], fl[i]);
  return 0;
}
