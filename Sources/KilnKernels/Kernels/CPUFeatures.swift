import Foundation

/// The instruction-set features of the machine's CPU that decide Kiln's kernel paths, as the operating system
/// reports them (Linux's `/proc/cpuinfo` lists a feature only when the kernel also saves its register state,
/// so AVX-512 appears only where it is usable).
public struct CPUFeatures: Equatable, Sendable {
    public var modelName: String
    public var flags: Set<String>

    public init(modelName: String, flags: Set<String>) {
        self.modelName = modelName
        self.flags = flags
    }

    /// AVX2 with FMA: 8-wide float vectors and fused multiply-add (Haswell and Zen onwards).
    public var hasAVX2: Bool { flags.isSuperset(of: ["avx2", "fma"]) }
    /// The AVX-512 subsets OpenBLAS's SkylakeX kernels use (F, BW, DQ, VL).
    public var hasAVX512: Bool { hasAVX2 && flags.isSuperset(of: ["avx512f", "avx512bw", "avx512dq", "avx512vl"]) }
    /// 8-bit dot products: AVX512-VNNI or AVX-VNNI.
    public var hasVNNI: Bool { flags.contains("avx512_vnni") || flags.contains("avx_vnni") }

    /// The widest vector path this CPU supports, for reports: "AVX-512", "AVX2", or "SSE".
    public var vectorPath: String { hasAVX512 ? "AVX-512" : hasAVX2 ? "AVX2" : "SSE" }

    /// The features Kiln cares about that this CPU has, in a fixed order, for reports.
    public var reported: [String] {
        ["avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni", "avx_vnni", "avx512_bf16",
         "avx512_fp16", "amx_tile"].filter(flags.contains)
    }

    /// This machine's features (read once).
    public static let current: CPUFeatures = read(cpuinfo: (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? "")

    /// Parses the first processor's `model name` and `flags` lines of `/proc/cpuinfo` text.
    public static func read(cpuinfo text: String) -> CPUFeatures {
        var model = "unknown", flags: Set<String> = []
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2 else { continue }
            if parts[0] == "model name", model == "unknown" { model = parts[1] }
            if parts[0] == "flags", flags.isEmpty { flags = Set(parts[1].split(separator: " ").map(String.init)) }
            if model != "unknown" && !flags.isEmpty { break }
        }
        return CPUFeatures(modelName: model, flags: flags)
    }
}
