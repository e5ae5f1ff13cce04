// writer_lock.h — the one-writer lock of a folder that holds shared or run state: a token store,
// a target log, a run folder. <dir>/<file> is locked with flock(LOCK_EX | LOCK_NB) and holds a
// line naming its holder ("host H pid P since T: WHAT").
//
//   rd_writer_lock()         take it, or fail at once naming the holder (RD_ERR_STATE)
//   rd_writer_unlock()       release it (or let the process end: the kernel drops it)
//   rd_writer_lock_shared()  hold it shared, as a reader that must not see the folder rewritten
//   rd_writer_lock_name()    is a folder entry the default lock file ("writer.lock")
//
// The lock lives exactly as long as its file descriptor, so a process that ends, is killed or
// crashes releases it: a lock is never stale on the host that took it. The file itself stays.
// On NFS the server arbitrates flock (NFSv4, or NFSv3 with lockd); see docs/reliability.md.
#ifndef RD_WRITER_LOCK_H
#define RD_WRITER_LOCK_H

#include <stddef.h>

#include "rd/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RD_WRITER_LOCK_FILE "writer.lock"

/**
 * Lock <dir>/<file> (file NULL: RD_WRITER_LOCK_FILE) without waiting and write "host H pid P
 * since T: what" into it. `kind` names the folder in messages ("token store", "run folder").
 * @param[out] fd  the lock; release with rd_writer_unlock
 * @return RD_OK; RD_ERR_STATE "<kind> <dir> is in use by another writer (<holder>; lock file
 *         ...)"; RD_ERR_IO (cannot create or lock the file); RD_ERR_ARG (path too long)
 */
int rd_writer_lock(
    const char *dir, const char *file, const char *kind, const char *what, int *fd, rd_errbuf *eb);

/** Release a lock of rd_writer_lock (closes fd; -1 is ignored). */
void rd_writer_unlock(int fd);

/**
 * Hold <dir>/<file> (file NULL: RD_WRITER_LOCK_FILE) with a shared lock (flock(LOCK_SH |
 * LOCK_NB)) for as long as *fd_out is open: a reader (a replaying launch) that must not see the
 * folder rewritten under it. Readers share it; a writer's rd_writer_lock fails while any holds
 * it, and a reader cannot take it while a writer holds it. Creates the file when missing (a
 * folder written by a tool holds none), else opens it read-only when it cannot be written.
 * @param[out] fd_out  the lock (release with rd_writer_unlock), -1 when none was taken
 * @param[out] holder  the writer's line when a writer holds it; may be NULL
 * @return 0 held shared; 1 a writer holds it (nothing taken); -1 the file cannot be created or
 *         opened, or flock failed otherwise (nothing taken: the caller goes on unprotected)
 */
int rd_writer_lock_shared(const char *dir, const char *file, int *fd_out, char *holder, size_t cap);

/** 1 if `name` is RD_WRITER_LOCK_FILE: an entry a fresh store or log folder may hold. */
int rd_writer_lock_name(const char *name);

#ifdef __cplusplus
}
#endif
#endif // RD_WRITER_LOCK_H
