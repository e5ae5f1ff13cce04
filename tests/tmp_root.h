// tmp_root.h — the exit status of a unit test whose cmocka group setup makes a temporary folder
// and whose group teardown removes it. cmocka 1.1 prints a failed group teardown ("[  FAILED  ]
// GROUP TEARDOWN") but leaves it out of what cmocka_run_group_tests returns, so a test that
// could not remove its folder passed, under ctest too, and left the folder in /tmp on every run.
#ifndef RD_TESTS_TMP_ROOT_H
#define RD_TESTS_TMP_ROOT_H

#include <stdio.h>
#include <unistd.h>

/** rc (what cmocka_run_group_tests returned), or non-zero when root, the folder the group setup
 *  made, is still there. */
static int tmp_root_status(int rc, const char *root) {
    if (access(root, F_OK) != 0)
        return rc;
    fprintf(stderr, "%s stays after the run: the group teardown did not remove it\n", root);
    return rc ? rc : 1;
}

#endif // RD_TESTS_TMP_ROOT_H
