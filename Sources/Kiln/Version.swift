import KilnKernels

/// Kiln's version and the kernel paths this machine runs, for `kiln --version` and benchmark reports.
public enum KilnVersion {
    public static let number = "0.8.0"

    /// "kiln 0.8.0", the CPU with its vector path and features, and what runs the matrix products.
    public static var description: String {
        let cpu = CPUFeatures.current
        var lines = ["kiln \(number)",
                     "cpu: \(cpu.modelName); \(cpu.vectorPath) (\(cpu.reported.isEmpty ? "none of avx2, fma, avx512*" : cpu.reported.joined(separator: " ")))"]
        lines.append("float kernels: \(KernelPaths.tiles) (Kiln's own kernels, \(KernelPaths.tilesSource))")
        lines.append("integer products: \(KernelPaths.integerPath) (quantized plans' 8-bit kernels, chosen at run time)")
        if let blas = OpenBLAS.report {
            lines.append("gemm: \(blas.config.split(separator: " ").prefix(2).joined(separator: " ")), \(blas.core) kernels (\(blas.source))")
        } else {
            lines.append("gemm: OpenBLAS not found (install libopenblas0); Kiln's Swift kernel runs every product")
        }
        return lines.joined(separator: "\n")
    }
}
