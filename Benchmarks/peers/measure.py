"""What every peer script measures the same way: resident memory, the timed loop and the lines it prints."""
import resource
import time


def resident_bytes():
    """The process's resident set now (VmRSS), to measure growth from the framework's own baseline."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def time_steps(step, warmup, iterations):
    """Runs `step` `warmup` times untimed, then `iterations` times, and returns each timed run in ms."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def report(framework, times, batch, baseline_rss):
    """The `key: value` lines run_peers.py reads: the median and fastest step, images per second, memory."""
    median = sorted(times)[len(times) // 2] if len(times) % 2 else sum(sorted(times)[len(times) // 2 - 1:len(times) // 2 + 1]) / 2
    print("framework: %s" % framework)
    print("ms_per_iteration: %.3f" % median)
    print("ms_min: %.3f" % min(times))
    print("images_per_second: %.1f" % (batch / (median / 1e3)))
    print("baseline_rss_bytes: %d" % baseline_rss)
    print("peak_rss_bytes: %d" % (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))
