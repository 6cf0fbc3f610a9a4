import Foundation
import Testing
@testable import Kiln

/// Kiln chooses OpenBLAS's kernel set from the CPU's features, and every set this CPU can run gives the same
/// products.
struct KernelPathTests {
    static let intel = """
        processor\t: 0
        vendor_id\t: GenuineIntel
        model name\t: Intel(R) Xeon(R) Platinum 8581C CPU @ 2.10GHz
        flags\t\t: fpu sse2 avx avx2 fma avx512f avx512dq avx512bw avx512vl avx512_vnni avx512_bf16 avx512_fp16 amx_tile
        processor\t: 1
        flags\t\t: fpu sse2
        """
    static let zen3 = "model name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx avx2 fma\n"
    static let old = "model name\t: Intel(R) Core(TM)2 Duo\nflags\t\t: fpu sse2 ssse3\n"
    /// AVX-512F alone (the subsets OpenBLAS's SkylakeX kernels also use are missing): treated as AVX2.
    static let partial = "model name\t: x\nflags\t\t: avx2 fma avx512f\n"

    @Test func featuresAreReadFromTheFirstProcessor() {
        let f = CPUFeatures.read(cpuinfo: Self.intel)
        #expect(f.modelName == "Intel(R) Xeon(R) Platinum 8581C CPU @ 2.10GHz")
        #expect(f.hasAVX2 && f.hasAVX512 && f.hasVNNI && f.vectorPath == "AVX-512")
        #expect(f.reported == ["avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile"])
        #expect(CPUFeatures.read(cpuinfo: "").modelName == "unknown")
    }

    @Test func theKernelSetFollowsTheFeatures() {
        #expect(OpenBLAS.coreType(for: CPUFeatures.read(cpuinfo: Self.intel)) == "SkylakeX")
        #expect(OpenBLAS.coreType(for: CPUFeatures.read(cpuinfo: Self.zen3)) == "Haswell")
        #expect(OpenBLAS.coreType(for: CPUFeatures.read(cpuinfo: Self.partial)) == "Haswell")
        #expect(OpenBLAS.coreType(for: CPUFeatures.read(cpuinfo: Self.old)) == nil)
    }

    /// On this machine: unless the environment chose, the loaded kernels are the ones Kiln asked for, and an
    /// AVX2 machine never runs the SSE3 "Prescott" kernels.
    @Test func thisMachineRunsTheChosenKernels() throws {
        try OpenBLAS.require()
        let report = try #require(OpenBLAS.report)
        if report.source.hasPrefix("chosen by Kiln") {
            #expect(report.core == OpenBLAS.coreType(for: CPUFeatures.current))
        }
        if CPUFeatures.current.hasAVX2 && !report.source.hasPrefix("set by") {
            #expect(!["Prescott", "Core2", "Penryn", "Nehalem", "Sandybridge"].contains(report.core))
        }
    }

    /// OpenBLAS is loaded with OPENBLAS_NUM_THREADS=1, even where the environment asked for more, so that it starts
    /// no pool of its own to compete with Kiln's workers.
    @Test func openBLASStartsNoThreadsOfItsOwn() throws {
        try OpenBLAS.require()
        #expect(ProcessInfo.processInfo.environment["OPENBLAS_NUM_THREADS"] == "1")
    }

    /// One product above Gemm's small-product limit (so OpenBLAS computes it), on every kernel set this CPU
    /// can run, through `kiln run` with OPENBLAS_CORETYPE set: each equals the naive product exactly (the
    /// values are multiples of 1/4 whose sums float32 holds exactly).
    @Test(.enabled(if: KilnProcess.exists, "no kiln binary next to the test bundle"))
    func everyKernelSetGivesTheSameProduct() throws {
        let (m, k, n) = (64, 256, 128)
        let x = (0..<(m * k)).map { Float(($0 * 7) % 9 - 4) / 4 }
        let w = (0..<(k * n)).map { Float(($0 * 5) % 7 - 3) / 4 }
        var expected = [Float](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n { for p in 0..<k { expected[i * n + j] += x[i * k + p] * w[p * n + j] } } }
        func list(_ v: [Float]) -> String { v.map { String($0) }.joined(separator: ", ") }
        let graph = #"{"format": "kiln-graph/1", "variables": [{"name": "x", "shape": [\#(m), \#(k)], "kind": "input"}, {"name": "W", "shape": [\#(k), \#(n)], "kind": "parameter", "data": [\#(list(w))]}], "functions": [{"name": "a", "type": "Affine", "inputs": ["x", "W"], "outputs": ["y"]}], "outputs": ["y"]}"#
        let inputs = #"{"x": {"shape": [\#(m), \#(k)], "data": [\#(list(x))]}}"#
        var cores = ["Prescott"]
        if CPUFeatures.current.hasAVX2 { cores.append("Haswell") }
        if CPUFeatures.current.hasAVX512 { cores.append("SkylakeX") }
        for core in cores {
            let dir = try KilnProcess.directory(["g.json": graph, "in.json": inputs])
            defer { try? FileManager.default.removeItem(at: dir) }
            let r = try KilnProcess.run(["run", "g.json", "--inputs", "in.json", "--outputs", "out.json"], in: dir,
                                        environment: ["OPENBLAS_CORETYPE": core])
            #expect(r.status == 0, "\(core): \(r.stderr)")
            let out = try TensorFile.read(path: dir.appendingPathComponent("out.json").path)
            #expect(out.first?.1.data == expected, "\(core) differs from the naive product")
            let version = try KilnProcess.run(["--version"], in: dir, environment: ["OPENBLAS_CORETYPE": core])
            #expect(version.stdout.contains("gemm: OpenBLAS") && version.stdout.contains("\(core) kernels (set by OPENBLAS_CORETYPE)"),
                    "\(version.stdout)")
        }
    }

    /// Kiln's own float kernels take the widest path the CPU's features allow, whatever its model name (AVX-512 on
    /// an AVX-512 machine), and KILN_KERNEL_PATH caps them: each name gives its path, or the widest below it that
    /// the CPU runs; a name that is no path is ignored and reported.
    @Test(.enabled(if: KilnProcess.exists, "no kiln binary next to the test bundle"))
    func ownKernelsFollowTheFeaturesAndTheCap() throws {
        let cpu = CPUFeatures.current
        let widest = cpu.hasAVX512 ? "avx512" : cpu.hasAVX2 ? "avx2+fma" : "generic"
        let dir = try KilnProcess.directory([:])
        defer { try? FileManager.default.removeItem(at: dir) }
        func line(_ cap: String) throws -> String {    // "" as if unset
            let r = try KilnProcess.run(["--version"], in: dir, environment: ["KILN_KERNEL_PATH": cap])
            #expect(r.status == 0, "\(r.stderr)")
            return r.stdout.split(separator: "\n").first { $0.hasPrefix("float kernels: ") }.map(String.init) ?? r.stdout
        }
        #expect(try line("").hasPrefix("float kernels: \(widest) (Kiln's own kernels, the widest this CPU runs)"))
        #expect(try line("generic").hasPrefix("float kernels: generic (Kiln's own kernels, KILN_KERNEL_PATH=generic"))
        #expect(try line("avx2").hasPrefix("float kernels: \(cpu.hasAVX2 ? "avx2+fma" : "generic") "))
        #expect(try line("avx512").hasPrefix("float kernels: \(widest) "))
        let ignored = try line("sse9")
        #expect(ignored.hasPrefix("float kernels: \(widest) ") && ignored.contains("KILN_KERNEL_PATH=sse9 is not"))
    }
}
