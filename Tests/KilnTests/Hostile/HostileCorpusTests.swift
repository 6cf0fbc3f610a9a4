import Foundation
import Testing

/// Hostile inputs through the real `kiln` binary, one class of the hardening issue per group: arithmetic that
/// would overflow, work that would never end, memory a file did not justify, results that would be silently
/// wrong. Every case must end with the expected status (1 for a Kiln error, 64 for a usage error, 0 where the
/// input is valid however odd) and message, by itself (no signal), within `seconds` and with a peak resident
/// memory under `peakBytes`, both measured by the kernel for that one process.
@Suite(.enabled(if: KilnProcess.exists, "no kiln binary next to the test bundle"))
struct HostileCorpusTests {
    /// Sanitizer builds run several times slower: `make sanitize` sets KILN_TEST_TIME_SCALE.
    static let seconds = 20.0 * (ProcessInfo.processInfo.environment["KILN_TEST_TIME_SCALE"].flatMap(Double.init) ?? 1)
    static let peakBytes = 1 << 30

    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        /// `{d}` stands for the case's directory.
        var arguments: [String]
        var files: [String: String]
        var status: Int32
        /// Text the first line of standard error (status 1 or 64) or standard output (status 0) must hold.
        var message: String
        var testDescription: String { name }
    }

    static func graph(_ variables: String, _ functions: String, _ outputs: String) -> String {
        #"{"format": "kiln-graph/1", "variables": [\#(variables)], "functions": [\#(functions)], "outputs": [\#(outputs)]}"#
    }

    static let image = #"{"name": "x", "shape": [1, 1, 4, 4], "kind": "input"}, {"name": "W", "shape": [1, 1, 3, 3], "kind": "parameter", "data": [1, 1, 1, 1, 1, 1, 1, 1, 1]}"#
    static func convolution(_ args: String) -> String {
        graph(image, #"{"name": "c", "type": "Convolution", "inputs": ["x", "W"], "outputs": ["y"], "args": {\#(args)}}"#, #""y""#)
    }
    static func unary(_ type: String, _ x: String, args: String = "") -> String {
        graph(#"{"name": "x", "shape": \#(x), "kind": "input"}"#,
              #"{"name": "f", "type": "\#(type)", "inputs": ["x"], "outputs": ["y"], "args": {\#(args)}}"#, #""y""#)
    }
    static let embed = graph(#"{"name": "x", "shape": [2], "kind": "input", "dtype": "int32"}, {"name": "W", "shape": [4, 3], "kind": "parameter"}"#,
                             #"{"name": "e", "type": "Embed", "inputs": ["x", "W"], "outputs": ["y"]}"#, #""y""#)
    static let relu = unary("ReLU", "[2]")
    static let billionInput = unary("ReLU", "[1000000000]")
    static let billionParameter = graph(#"{"name": "x", "shape": [1, 4], "kind": "input"}, {"name": "W", "shape": [4, 250000000], "kind": "parameter"}"#,
                                        #"{"name": "a", "type": "Affine", "inputs": ["x", "W"], "outputs": ["y"]}"#, #""y""#)
    /// A chain of 20,000 ReLUs listed consumers first (resolving it by repeated passes took 17.7 s).
    static let reversedChain: String = {
        let n = 20_000
        let functions = (0..<n).reversed().map { i in
            #"{"name": "f\#(i)", "type": "ReLU", "inputs": ["\#(i == 0 ? "x" : "h\(i - 1)")"], "outputs": ["h\#(i)"]}"#
        }
        return graph(#"{"name": "x", "shape": [1, 4], "kind": "input"}"#, functions.joined(separator: ", "), #""h\#(n - 1)""#)
    }()
    /// A transposed convolution with stride 10^6 (its col2im looped over every one of the stride^2 phases),
    /// then a convolution back to one pixel: z = sum(2 W * W) = 2 * 285, hand-computed.
    static let hugeStride = graph(
        #"{"name": "x", "shape": [1, 1, 1, 1], "kind": "input", "need_grad": true}, {"name": "W", "shape": [1, 1, 3, 3], "kind": "parameter", "need_grad": true, "data": [1, 2, 3, 4, 5, 6, 7, 8, 9]}"#,
        #"{"name": "d", "type": "Deconvolution", "inputs": ["x", "W"], "outputs": ["y"], "args": {"stride": [1000000, 1000000]}}, {"name": "c", "type": "Convolution", "inputs": ["y", "W"], "outputs": ["z"], "args": {"stride": [3000000, 3000000]}}"#,
        #""z""#)

    static let cases: [Case] = [
        // Arithmetic that overflowed (Swift traps).
        Case(name: "convolution pad 2^62", arguments: ["plan", "{d}/g.json"], files: ["g.json": convolution(#""pad": [4611686018427387904, 0]"#)],
             status: 1, message: "overflows the integer range"),
        Case(name: "convolution dilation 2^62", arguments: ["plan", "{d}/g.json"], files: ["g.json": convolution(#""dilation": [4611686018427387904, 1]"#)],
             status: 1, message: "Convolution: kernel span dilation 4611686018427387904"),
        Case(name: "max pooling kernel 2^62 + 1", arguments: ["plan", "{d}/g.json"],
             files: ["g.json": unary("MaxPooling", "[1, 1, 4, 4]", args: #""kernel": [4611686018427387905, 1], "pad": [4611686018427387904, 0]"#)],
             status: 1, message: "overflows"),
        Case(name: "reshape to 2^64 elements", arguments: ["plan", "{d}/g.json"], files: ["g.json": unary("Reshape", "[8]", args: #""shape": [4611686018427387904, 4]"#)],
             status: 1, message: "has too many elements"),
        Case(name: "shape of 2^64 elements", arguments: ["plan", "{d}/g.json"], files: ["g.json": unary("ReLU", "[4294967296, 4294967296]")],
             status: 1, message: "has too many elements"),
        Case(name: "slice step Int.min is Python's empty slice", arguments: ["plan", "{d}/g.json", "--format", "json"],
             files: ["g.json": unary("Slice", "[8]", args: #""start": [0], "stop": [8], "step": [-9223372036854775808]"#)],
             status: 0, message: "arena_bytes"),
        Case(name: "int32 input fed 1e30", arguments: ["run", "{d}/g.json", "--inputs", "{d}/in.json", "--outputs", "{d}/out.json"],
             files: ["g.json": embed, "in.json": #"{"x": {"shape": [2], "data": [1e30, 0]}}"#], status: 1, message: "outside int32's range"),
        // Work that never ended.
        Case(name: "20,000 functions listed consumers first", arguments: ["run", "{d}/g.json", "--inputs", "{d}/in.json", "--outputs", "{d}/out.json"],
             files: ["g.json": reversedChain, "in.json": #"{"x": {"shape": [1, 4], "data": [1, -2, 3, -4]}}"#], status: 0, message: ""),
        Case(name: "transposed convolution stride 10^6", arguments: ["run", "{d}/g.json", "--inputs", "{d}/in.json", "--outputs", "{d}/out.json", "--backward"],
             files: ["g.json": hugeStride, "in.json": #"{"x": {"shape": [1, 1, 1, 1], "data": [2]}}"#], status: 0, message: ""),
        Case(name: "JSON nested 100,000 deep", arguments: ["plan", "{d}/g.json"], files: ["g.json": String(repeating: "[", count: 100_000)],
             status: 1, message: "nesting deeper than 64"),
        // Memory a file did not justify.
        Case(name: "convolution pad 20,000 (a 64 GB plan)", arguments: ["plan", "{d}/g.json", "--max-memory", "4G"], files: ["g.json": convolution(#""pad": [20000, 20000]"#)],
             status: 1, message: "above the memory budget of 4294967296 bytes"),
        Case(name: "convolution pad 200,000 (a tensor beyond physical memory)", arguments: ["plan", "{d}/g.json"], files: ["g.json": convolution(#""pad": [200000, 200000]"#)],
             status: 1, message: "Convolution output [1, 1, 400002, 400002] has too many elements"),
        Case(name: "a 10^9-element input: planned without allocating", arguments: ["plan", "{d}/g.json"], files: ["g.json": billionInput],
             status: 0, message: "plan inference"),
        Case(name: "a 10^9-element input: benchmark above --max-memory", arguments: ["bench", "{d}/g.json", "--max-memory", "512M"], files: ["g.json": billionInput],
             status: 1, message: "above the memory budget of 536870912 bytes"),
        Case(name: "a 10^9-element input: fed a different shape", arguments: ["run", "{d}/g.json", "--inputs", "{d}/in.json", "--outputs", "{d}/out.json"],
             files: ["g.json": billionInput, "in.json": #"{"x": {"shape": [2], "data": [1, 2]}}"#], status: 1, message: "the graph declares [1000000000]"),
        Case(name: "a 10^9-element parameter without data: planned without initialising", arguments: ["plan", "{d}/g.json"],
             files: ["g.json": billionParameter], status: 0, message: "plan inference"),
        Case(name: "a 10^9-element parameter without data: run above --max-memory", arguments: ["run", "{d}/g.json", "--inputs", "{d}/in.json", "--outputs", "{d}/out.json", "--max-memory", "1G"],
             files: ["g.json": billionParameter, "in.json": #"{"x": {"shape": [1, 4], "data": [1, 2, 3, 4]}}"#], status: 1, message: "above the memory budget of 1073741824 bytes"),
        Case(name: "a graph file bigger than --max-memory", arguments: ["plan", "{d}/g.json", "--max-memory", "100"], files: ["g.json": relu],
             status: 1, message: "exceed the memory budget of 100 bytes"),
        Case(name: "graph file /dev/zero", arguments: ["plan", "/dev/zero"], files: [:], status: 1, message: "/dev/zero: it is not a regular file"),
        Case(name: "inputs file /dev/zero", arguments: ["run", "{d}/g.json", "--inputs", "/dev/zero", "--outputs", "{d}/out.json"], files: ["g.json": relu],
             status: 1, message: "/dev/zero: it is not a regular file"),
        Case(name: "graph file is a directory", arguments: ["plan", "{d}"], files: [:], status: 1, message: "it is a directory"),
        // Results that were silently wrong.
        Case(name: "unfed input", arguments: ["run", "{d}/g.json", "--inputs", "{d}/in.json", "--outputs", "{d}/out.json"],
             files: ["g.json": relu, "in.json": "{}"], status: 1, message: "input 'x' is not given"),
        Case(name: "int32 input fed 1.5", arguments: ["run", "{d}/g.json", "--inputs", "{d}/in.json", "--outputs", "{d}/out.json"],
             files: ["g.json": embed, "in.json": #"{"x": {"shape": [2], "data": [1.5, 0]}}"#], status: 1, message: "1.5 at index 0 is not an integer"),
        Case(name: "non-string dtype", arguments: ["plan", "{d}/g.json"],
             files: ["g.json": graph(#"{"name": "x", "shape": [2], "kind": "input", "dtype": 5}"#, #"{"name": "f", "type": "ReLU", "inputs": ["x"], "outputs": ["y"]}"#, #""y""#)],
             status: 1, message: "dtype must be a string, got 5"),
        Case(name: "1e39 in a float32 input", arguments: ["run", "{d}/g.json", "--inputs", "{d}/in.json", "--outputs", "{d}/out.json"],
             files: ["g.json": relu, "in.json": #"{"x": {"shape": [2], "data": [1e39, 0]}}"#], status: 1, message: "beyond float32's range"),
        Case(name: "NaN parameter", arguments: ["plan", "{d}/g.json"],
             files: ["g.json": convolution("").replacingOccurrences(of: "[1, 1, 1, 1, 1, 1, 1, 1, 1]", with: #"[1, 1, 1, 1, "NaN", 1, 1, 1, 1]"#)],
             status: 1, message: "'W'"),
        Case(name: "--max-memory that is no size", arguments: ["plan", "mlp", "--max-memory", "lots"], files: [:],
             status: 64, message: "Error: --max-memory must be a size such as 512M, 2G or 1073741824, or 'none', got 'lots'"),
        Case(name: "--max-memory zero", arguments: ["plan", "mlp", "--max-memory", "0"], files: [:],
             status: 64, message: "Error: --max-memory must be at least 1 byte"),
    ]

    @Test(arguments: cases)
    func endsCleanlyWithinBounds(_ c: Case) throws {
        let dir = try KilnProcess.directory(c.files)
        defer { try? FileManager.default.removeItem(at: dir) }
        let arguments = c.arguments.map { $0.replacingOccurrences(of: "{d}", with: dir.path) }
        let r = try BoundedProcess.run(KilnProcess.binary, arguments, directory: dir, timeout: Self.seconds)
        #expect(r.signal == nil, "ended by signal \(r.signal ?? 0): \(r.stderr)")
        #expect(!r.timedOut, "still running after \(Self.seconds) s")
        #expect(r.status == c.status, "status \(r.status.map(String.init) ?? "none"): \(r.stderr)")
        #expect(r.peakBytes < Self.peakBytes, "peak resident memory \(r.peakBytes) bytes")
        let line = String((c.status == 0 ? r.stdout : r.stderr).split(separator: "\n").first ?? "")
        #expect(c.message.isEmpty || line.contains(c.message), "first line: \(line)")
        if c.status == 1 { #expect(line.hasPrefix("kiln: error: "), "\(line)") }
    }

    /// The two valid oddities compute the right values: the chain is ReLU of the input (hand-computed), and the
    /// stride-10^6 pair gives z = 2 * sum(W^2) = 570, dz/dx = sum(W^2) = 285 and dz/dW = 4 W.
    @Test func theValidOdditiesComputeTheRightValues() throws {
        for (g, input, expected) in [
            (Self.reversedChain, #"{"x": {"shape": [1, 4], "data": [1, -2, 3, -4]}}"#, [#""h19999": {"shape": [1, 4], "data": [1, 0, 3, 0]}"#]),
            (Self.hugeStride, #"{"x": {"shape": [1, 1, 1, 1], "data": [2]}}"#,
             [#""z": {"shape": [1, 1, 1, 1], "data": [570]}"#, #""grad:x": {"shape": [1, 1, 1, 1], "data": [285]}"#,
              #""grad:W": {"shape": [1, 1, 3, 3], "data": [4, 8, 12, 16, 20, 24, 28, 32, 36]}"#]),
        ] {
            let dir = try KilnProcess.directory(["g.json": g, "in.json": input])
            defer { try? FileManager.default.removeItem(at: dir) }
            let r = try KilnProcess.run(["run", "g.json", "--inputs", "in.json", "--outputs", "out.json", "--backward"], in: dir)
            #expect(r.status == 0, "\(r.stderr)")
            let out = try String(contentsOf: dir.appendingPathComponent("out.json"), encoding: .utf8)
            for e in expected { #expect(out.contains(e), "\(out)") }
        }
    }

    /// Runs one bounded case in `dir` and checks it ends with status 1 and a first error line holding `message`.
    static func expectError(_ arguments: [String], in dir: URL, _ message: String) throws {
        let r = try BoundedProcess.run(KilnProcess.binary, arguments, directory: dir, timeout: seconds)
        #expect(r.signal == nil && !r.timedOut, "signal \(r.signal ?? 0), timed out \(r.timedOut): \(r.stderr)")
        #expect(r.status == 1, "status \(r.status.map(String.init) ?? "none"): \(r.stderr)")
        #expect(r.peakBytes < peakBytes, "peak resident memory \(r.peakBytes) bytes")
        let line = String(r.stderr.split(separator: "\n").first ?? "")
        #expect(line.hasPrefix("kiln: error: ") && line.contains(message), "\(line)")
    }

    /// A FIFO as a graph file: refused at once (a plain read would wait for a writer forever).
    @Test func aFIFOIsNotRead() throws {
        let dir = try KilnProcess.directory([:])
        defer { try? FileManager.default.removeItem(at: dir) }
        try #require(mkfifo(dir.path + "/g.json", 0o600) == 0, "mkfifo failed")
        try Self.expectError(["plan", dir.path + "/g.json"], in: dir, "it is not a regular file")
    }

    /// An IDX header claiming 1.3 million images over a few bytes, and a gzip bomb (64 MiB of zeros in 64 KiB)
    /// under a 16 MiB budget: both refused before the memory is taken (the first allocated 4.9 GB).
    @Test func datasetFilesAreCheckedBeforeAllocating() throws {
        let dir = try KilnProcess.directory([:])
        defer { try? FileManager.default.removeItem(at: dir) }
        var header: [UInt8] = [0, 0, 8, 3]
        for d in [1_300_000, 28, 28] { header += [UInt8(d >> 24 & 255), UInt8(d >> 16 & 255), UInt8(d >> 8 & 255), UInt8(d & 255)] }
        try Data(header + [UInt8](repeating: 7, count: 100)).write(to: dir.appendingPathComponent("train-images-idx3-ubyte"))
        try Self.expectError(["train", "lenet", "--data-dir", dir.path], in: dir, "header says 1019200000 bytes of data, file has 100")

        let bomb = dir.appendingPathComponent("bomb")
        try FileManager.default.createDirectory(at: bomb, withIntermediateDirectories: true)
        let gzip = Process()
        gzip.executableURL = URL(fileURLWithPath: "/bin/sh")
        gzip.arguments = ["-c", "head -c 67108864 /dev/zero | gzip -9 > '\(bomb.path)/train-images-idx3-ubyte.gz'"]
        try gzip.run()
        gzip.waitUntilExit()
        try #require(gzip.terminationStatus == 0, "gzip could not make the test file")
        let size = try #require(try FileManager.default.attributesOfItem(atPath: bomb.path + "/train-images-idx3-ubyte.gz")[.size] as? Int)
        #expect(size < 1 << 20)
        try Self.expectError(["train", "lenet", "--data-dir", bomb.path, "--max-memory", "16M"], in: dir, "decompresses to more than 16777216 bytes")
    }

    /// A checkpoint claiming iteration 10^12 or Int.max (the resume replayed that many shuffles), and one that
    /// is a symlink to /dev/zero: clear errors. Needs Fashion-MNIST, which `make test` installs.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/usr/share/datasets/fashion-mnist"),
                   "Debian's dataset-fashion-mnist is not installed"))
    func hostileCheckpointsAreRefused() throws {
        for iteration in ["1000000000000", "\(Int.max)"] {
            let dir = try KilnProcess.directory([
                "save/checkpoint.json": #"{"iteration": \#(iteration), "parameters": "p.safetensors", "solvers": ["s.safetensors"]}"#,
            ])
            defer { try? FileManager.default.removeItem(at: dir) }
            try Self.expectError(["train", "lenet", "--model-save-path", dir.path + "/save", "--resume", "--max-iterations", "2"], in: dir,
                            "iteration \(iteration)")
        }
        // A parameter file whose header claims 2^60 bytes of JSON.
        let liar = try KilnProcess.directory([
            "save/checkpoint.json": #"{"iteration": 0, "parameters": "p.safetensors", "solvers": ["s.safetensors"]}"#,
        ])
        defer { try? FileManager.default.removeItem(at: liar) }
        try Data([0, 0, 0, 0, 0, 0, 0, 16] + Array("{}".utf8)).write(to: liar.appendingPathComponent("save/p.safetensors"))
        try Self.expectError(["train", "lenet", "--model-save-path", liar.path + "/save", "--resume", "--max-iterations", "2"], in: liar,
                             "safetensors")
        let dir = try KilnProcess.directory([:])
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("save"), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: dir.path + "/save/checkpoint.json", withDestinationPath: "/dev/zero")
        try Self.expectError(["train", "lenet", "--model-save-path", dir.path + "/save", "--resume", "--max-iterations", "2"], in: dir,
                        "not a regular file")
    }
}
