import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Runs a program under a wall-clock limit and reports how it ended, how long it took and its peak resident
/// memory, so that tests can bound time and memory as well as check the exit status. Standard output and
/// error go to files in `directory`.
///
/// The peak is the kernel's high-water mark of the program's own address space (`VmHWM` in
/// `/proc/PID/status`), read every millisecond while it runs. `wait4`'s `ru_maxrss` cannot be used: a child
/// spawned from this (large) test process starts with the parent's figure, since `posix_spawn` runs it in
/// the parent's address space until it executes the program. A peak reached and released in the last
/// millisecond before the program exits could be missed; the hostile cases this serves must refuse before
/// they allocate, so what they allocate would have to live for the rest of the run.
enum BoundedProcess {
    struct Result {
        /// The exit status, or nil when a signal ended the process.
        var status: Int32?
        var signal: Int32?
        var timedOut: Bool
        var seconds: Double
        var peakBytes: Int
        var stdout: String
        var stderr: String
    }

    static func run(_ executable: String, _ arguments: [String], directory: URL, timeout: Double) throws -> Result {
        let outPath = directory.appendingPathComponent(".stdout").path
        let errPath = directory.appendingPathComponent(".stderr").path
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        let start = Date()
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, executable, &actions, nil, argv, environ)
        guard spawned == 0 else {
            throw NSError(domain: "BoundedProcess", code: Int(spawned),
                          userInfo: [NSLocalizedDescriptionKey: "cannot start \(executable): \(String(cString: strerror(spawned)))"])
        }
        var status: Int32 = 0
        var usage = rusage()
        var timedOut = false
        var peak = 0
        while true {
            peak = max(peak, highWaterMark(pid))
            let r = wait4(pid, &status, WNOHANG, &usage)
            if r == pid { break }
            if r < 0 && errno != EINTR { break }
            if Date().timeIntervalSince(start) > timeout {
                timedOut = true
                kill(pid, SIGKILL)
                while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
                break
            }
            usleep(1_000)
        }
        let seconds = Date().timeIntervalSince(start)
        let signalled = (status & 0x7f) != 0
        return Result(status: signalled ? nil : (status >> 8) & 0xff, signal: signalled ? status & 0x7f : nil,
                      timedOut: timedOut, seconds: seconds, peakBytes: peak,
                      stdout: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
                      stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")
    }

    /// `VmHWM` of a running process in bytes (0 once it has exited).
    static func highWaterMark(_ pid: pid_t) -> Int {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }) else { return 0 }
        let kilobytes = line.dropFirst("VmHWM:".count).split(separator: " ").first.flatMap { Int($0) } ?? 0
        return kilobytes * 1024
    }
}
