"""Resident-set readings shared by the peer scripts."""


def resident_bytes():
    """The process's resident set now (VmRSS), to measure growth from the framework's own baseline."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0
