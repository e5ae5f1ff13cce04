# lib/flock.sh — hold a writer lock from outside, as another launch or tool would (flock(1)).
# Sourced, not run (tests/CMakeLists.txt makes tests of tests/scripts/*.sh only). The caller
# defines fail(). A fixed sleep after starting flock raced it on a loaded machine: the launch
# under test could start before the lock was taken and not be refused.

# hold_lock FILE: flock(1) holds FILE in the background (for at most 60 s) until release_lock;
# returns once the lock is held.
hold_lock() {
    flock -o "$1" sleep 60 &  # -o: flock itself holds the lock, sleep does not
    HELD_LOCK_PID=$!
    local i
    for i in $(seq 200); do
        flock -n "$1" true 2>/dev/null || return 0
        sleep 0.05
    done
    fail "could not take the lock $1 within 10 s"
}

release_lock() {
    pkill -P "$HELD_LOCK_PID" sleep 2>/dev/null
    kill "$HELD_LOCK_PID" 2>/dev/null
    wait "$HELD_LOCK_PID" 2>/dev/null
    return 0
}
