/* A disk that fills up on demand, for tests (tests/integration/test_disk_faults.py).
 *
 * Preloaded into `ocs serve` (LD_PRELOAD): while the file named by
 * $OCS_DISK_FULL_FLAG exists, every write, fsync and fallocate to a regular
 * file under $OCS_DISK_FULL_DIR fails with ENOSPC, as on a full disk. Sockets,
 * pipes and other files are untouched. Built by the test with the machine's gcc. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

static int full(int fd) {
    const char *flag = getenv("OCS_DISK_FULL_FLAG"), *dir = getenv("OCS_DISK_FULL_DIR");
    struct stat st;
    if (!flag || !dir || access(flag, F_OK) != 0) return 0;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return 0;
    path[n] = 0;
    return strncmp(path, dir, strlen(dir)) == 0;
}

#define REAL(name) static __typeof__(name) *real; if (!real) real = dlsym(RTLD_NEXT, #name)

ssize_t write(int fd, const void *buf, size_t n) {
    REAL(write);
    if (full(fd)) { errno = ENOSPC; return -1; }
    return real(fd, buf, n);
}
ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) {
    REAL(pwrite64);
    if (full(fd)) { errno = ENOSPC; return -1; }
    return real(fd, buf, n, off);
}
ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
    REAL(pwrite);
    if (full(fd)) { errno = ENOSPC; return -1; }
    return real(fd, buf, n, off);
}
int fdatasync(int fd) {
    REAL(fdatasync);
    if (full(fd)) { errno = ENOSPC; return -1; }
    return real(fd);
}
int fsync(int fd) {
    REAL(fsync);
    if (full(fd)) { errno = ENOSPC; return -1; }
    return real(fd);
}
int posix_fallocate64(int fd, off_t off, off_t len) {
    REAL(posix_fallocate64);
    if (full(fd)) return ENOSPC;
    return real(fd, off, len);
}
int posix_fallocate(int fd, off_t off, off_t len) {
    REAL(posix_fallocate);
    if (full(fd)) return ENOSPC;
    return real(fd, off, len);
}
