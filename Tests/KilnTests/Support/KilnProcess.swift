import Foundation

/// Runs the built `kiln` (next to the test bundle) in a directory of files the test writes, for tests of
/// exit statuses and messages.
enum KilnProcess {
    static let binary = Bundle.module.bundleURL.deletingLastPathComponent().appendingPathComponent("kiln").path
    static var exists: Bool { FileManager.default.isExecutableFile(atPath: binary) }

    /// A fresh temporary directory holding `files` (relative path: text).
    static func directory(_ files: [String: String]) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-process-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        for (name, text) in files {
            let url = dir.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(text.utf8).write(to: url)
        }
        return dir
    }

    /// Runs `kiln arguments` in `directory` (relative paths in the arguments are files there).
    static func run(_ arguments: [String], in directory: URL, environment: [String: String] = [:]) throws -> (status: Int32, stdout: String, stderr: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = arguments
        p.currentDirectoryURL = directory
        p.environment = ProcessInfo.processInfo.environment.merging(["COLUMNS": "80"].merging(environment) { $1 }) { $1 }
        let outURL = directory.appendingPathComponent(".stdout"), errURL = directory.appendingPathComponent(".stderr")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        p.standardOutput = try FileHandle(forWritingTo: outURL)
        p.standardError = try FileHandle(forWritingTo: errURL)
        try p.run()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: try Data(contentsOf: outURL), as: UTF8.self),
                String(decoding: try Data(contentsOf: errURL), as: UTF8.self))
    }

    /// Runs `kiln arguments` with `files` in a temporary directory that is removed afterwards.
    static func run(_ arguments: [String], files: [String: String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let dir = try directory(files)
        defer { try? FileManager.default.removeItem(at: dir) }
        return try run(arguments, in: dir)
    }
}
