import Foundation
import Testing

private let readmeKilnBinary = Bundle.module.bundleURL.deletingLastPathComponent().appendingPathComponent("kiln").path

/// Every shell command the README shows (its ```sh blocks) runs, in order, in one scratch folder, with the
/// `kiln` built next to the tests first on PATH, and exits with status 0. Two commands are not run here,
/// because they are what CI itself runs: `make test` (this suite) and `make demo`. Under root, Open MPI's
/// own environment switches allow `mpirun` to run as root and on more ranks than cores; the command lines
/// stay as the README prints them.
@Suite(.enabled(if: FileManager.default.isExecutableFile(atPath: readmeKilnBinary),
                "no kiln binary next to the test bundle (build it with swift build --build-tests)"))
struct ReadmeCommandsTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    static let runByCI: Set<String> = ["make demo", "make test"]

    /// The commands of the README's ```sh blocks, comments removed.
    static func commands() throws -> [String] {
        let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
        var out: [String] = [], inShell = false
        for line in readme.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("```") { inShell = !inShell && line == "```sh"; continue }
            guard inShell else { continue }
            let command = (line.range(of: " #").map { line[..<$0.lowerBound] } ?? line[...]).trimmingCharacters(in: .whitespaces)
            if !command.isEmpty { out.append(command) }
        }
        return out
    }

    @Test func everyCommandRuns() throws {
        let commands = try Self.commands()
        #expect(commands.filter { $0.hasPrefix("kiln ") }.count >= 5, "the README shows kiln commands")
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("readme-\(UUID())")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        for command in commands where !Self.runByCI.contains(command) {
            let (status, output) = try Self.run(command, in: scratch, timeout: 600)
            #expect(status == 0, "`\(command)` exited with \(status):\n\(output.suffix(2000))")
        }
    }

    /// Runs one command line through /bin/sh, killing it (SIGKILL: children of the test runner ignore
    /// SIGTERM) if it outlives `timeout` seconds.
    static func run(_ command: String, in directory: URL, timeout: Double) throws -> (Int32, String) {
        let log = directory.appendingPathComponent(".output-\(UUID())")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: log) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", command]
        p.currentDirectoryURL = directory
        var env = ProcessInfo.processInfo.environment
        env["PATH"] = URL(fileURLWithPath: readmeKilnBinary).deletingLastPathComponent().path + ":" + (env["PATH"] ?? "/usr/bin:/bin")
        if getuid() == 0 {
            env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
            env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        }
        env["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
        env["OMPI_MCA_btl_vader_single_copy_mechanism"] = "none"
        p.environment = env
        let handle = try FileHandle(forWritingTo: log)
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(50_000) }
        if p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            return (-1, "killed after \(Int(timeout)) s")
        }
        try handle.close()
        return (p.terminationStatus, String(decoding: try Data(contentsOf: log), as: UTF8.self))
    }
}
