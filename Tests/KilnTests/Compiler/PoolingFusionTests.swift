import CKilnKernels
import Testing
@testable import Kiln

/// Poolings joined to the convolution before them (`Fusion`, `FusedConvolution.pooling`): each output plane is
/// pooled in the convolution's epilogue. The fused plans must give the separate steps' values bit for bit, NaNs
/// included, on every tile path and thread count, and leave alone what they cannot take.
@Suite(.serialized)
struct PoolingFusionTests {
    static func fill(_ v: Variable, _ rng: inout SplitMix64, _ range: ClosedRange<Float>) throws {
        try v.setData((0..<v.shape.reduce(1, *)).map { _ in Float.random(in: range, using: &rng) })
    }

    static func bits(_ roots: [Variable], fusion: Bool) throws -> (Plan, [[UInt32]]) {
        let exe = try Compiler.compile(roots, .inference, options: CompileOptions(fusion: fusion))
        try exe.plan.verify()
        try exe.run()
        return (exe.plan, roots.map { $0.d.map(\.bitPattern) })
    }

    static func conv(_ x: Variable, maps: Int, kernel: Int, pad: Int = 0, bias: Bool = true, weights: Float = 1,
                     _ rng: inout SplitMix64) throws -> Variable {
        let w = try Variable(shape: [maps, x.shape[1], kernel, kernel])
        try fill(w, &rng, -weights...weights)
        let b = bias ? try Variable(shape: [maps]) : nil
        if let b { try fill(b, &rng, -1...1) }
        return try F.convolution(x, w, b, pad: [pad, pad])
    }

    static func bn(_ h: Variable, _ rng: inout SplitMix64) throws -> Variable {
        let maps = h.shape[1]
        let p = try (0..<4).map { _ in try Variable(shape: [1, maps, 1, 1]) }
        try fill(p[0], &rng, -1...1); try fill(p[1], &rng, -2...2); try fill(p[2], &rng, -1...1); try fill(p[3], &rng, 0.1...3)
        return try F.batchNormalization(h, p[0], p[1], p[2], p[3], batchStat: false)
    }

    /// LeNet's layers: convolution, 2x2 max pooling, ReLU, twice (24-wide and 8-wide output rows).
    static func lenet(_ rng: inout SplitMix64, batch: Int = 3) throws -> (Variable, Variable) {
        let x = try Variable(shape: [batch, 1, 28, 28])
        try fill(x, &rng, -1...1)
        var h = try F.relu(F.maxPooling(conv(x, maps: 16, kernel: 5, &rng), kernel: [2, 2]))
        h = try F.relu(F.maxPooling(conv(h, maps: 16, kernel: 5, &rng), kernel: [2, 2]))
        // One more step, so that the fused output is an arena value (roots have their own memory).
        return (x, try F.mulScalar(h, val: 2))
    }

    @Test func lenetLayersAreBitIdentical() throws {
        var rng = SplitMix64(seed: 3)
        let (_, y) = try Self.lenet(&rng)
        let (fused, a) = try Self.bits([y], fusion: true)
        let (plain, b) = try Self.bits([y], fusion: false)
        #expect(a == b)
        #expect(a[0].contains { $0 != 0 })
        #expect(fused.steps.map(\.function) == ["Convolution+MaxPooling+ReLU", "Convolution+MaxPooling+ReLU", "MulScalar"])
        // The convolutions' full-sized outputs never exist.
        #expect(fused.arenaBytes < plain.arenaBytes)
    }

    /// The same on two threads, on the generic and AVX2 paths ("" is the widest: AVX-512 where the CPU has it), and
    /// at batch 1 (a sample's maps shared between threads).
    @Test(arguments: [(2, "", 3), (1, "generic", 3), (2, "", 1), (1, "avx2+fma", 3)])
    func threadsAndPathsAreBitIdentical(_ threads: Int, _ path: String, _ batch: Int) throws {
        var rng = SplitMix64(seed: 5)
        let (_, y) = try Self.lenet(&rng, batch: batch)
        let (_, reference) = try Self.bits([y], fusion: false)
        if !path.isEmpty { kiln_tile_force_path(path) }
        defer { kiln_tile_force_path(nil) }
        try Threads.with(threads) {
            let (_, a) = try Self.bits([y], fusion: true)
            #expect(a == reference)
        }
    }

    struct Case: CustomTestStringConvertible, Sendable {
        var bn = false, residual = false, before: String? = nil, pooling = "max", kernel = 2, stride = 2, pad = 0
        var ignoreBorder = true, includingPad = true, after: String? = nil
        var testDescription: String {
            "bn \(bn) residual \(residual) before \(before ?? "-") \(pooling) k\(kernel) s\(stride) p\(pad) "
                + "ignoreBorder \(ignoreBorder) includingPad \(includingPad) after \(after ?? "-")"
        }
    }

    /// A stem's BN, ReLU and 3x3/2 padded max pooling; average pooling with and without the padding counted;
    /// windows past the border (ignore_border false); a residual before the pooling; ReLU6 after it.
    @Test(arguments: [
        Case(bn: true, before: "relu", kernel: 3, stride: 2, pad: 1),
        Case(pooling: "average", kernel: 3, stride: 2, pad: 1, includingPad: false, after: "relu"),
        Case(bn: true, pooling: "average", kernel: 2, stride: 2, pad: 1, includingPad: true, after: "relu6"),
        Case(kernel: 3, stride: 2, ignoreBorder: false, after: "relu"),
        Case(bn: true, residual: true, before: "relu"),
        Case(pooling: "average", kernel: 2, stride: 1),
    ])
    func chainsAreBitIdentical(_ c: Case) throws {
        var rng = SplitMix64(seed: 11)
        let x = try Variable(shape: [2, 3, 16, 16])
        try Self.fill(x, &rng, -1...1)
        // The residual is made before the convolution, from x.
        let residual = c.residual ? try F.tanh(Self.conv(x, maps: 8, kernel: 1, &rng)) : nil
        // Larger weights for ReLU6, so that values pass its upper bound.
        var h = try Self.conv(x, maps: 8, kernel: 3, pad: 1, weights: c.after == "relu6" ? 8 : 1, &rng)
        if c.bn { h = try Self.bn(h, &rng) }
        if let residual { h = try F.add2(h, residual) }
        if c.before == "relu" { h = try F.relu(h) }
        if c.pooling == "max" {
            h = try F.maxPooling(h, kernel: [c.kernel, c.kernel], stride: [c.stride, c.stride], ignoreBorder: c.ignoreBorder,
                                 pad: [c.pad, c.pad])
        } else {
            h = try F.averagePooling(h, kernel: [c.kernel, c.kernel], stride: [c.stride, c.stride],
                                     ignoreBorder: c.ignoreBorder, pad: [c.pad, c.pad], includingPad: c.includingPad)
        }
        if c.after == "relu" { h = try F.relu(h) }
        if c.after == "relu6" { h = try F.relu6(h) }
        h = try F.mulScalar(h, val: 4)
        let (fused, a) = try Self.bits([h], fusion: true)
        let (_, b) = try Self.bits([h], fusion: false)
        #expect(a == b)
        #expect(a[0].contains { $0 != 0 })
        // ReLU6's upper bound is reached (the outputs are multiplied by 4).
        if c.after == "relu6" { #expect(a[0].contains(Float(24).bitPattern)) }
        let name = fused.steps.map(\.function).first { $0.contains("Pooling") } ?? ""
        let expected = ["Convolution"] + (c.bn ? ["BatchNormalization"] : []) + (c.residual ? ["Add2"] : [])
            + (c.before == "relu" ? ["ReLU"] : []) + [c.pooling == "max" ? "MaxPooling" : "AveragePooling"]
            + (c.after == "relu" ? ["ReLU"] : c.after == "relu6" ? ["ReLU6"] : [])
        #expect(name == expected.joined(separator: "+"))
    }

    /// NaN and infinite inputs reach the pooling windows: the fused windows pick what the separate steps pick.
    @Test func nonFiniteValuesAreBitIdentical() throws {
        var rng = SplitMix64(seed: 13)
        let (x, y) = try Self.lenet(&rng)
        var values = x.d
        for i in stride(from: 0, to: values.count, by: 97) { values[i] = i % 2 == 0 ? .nan : -.infinity }
        try x.setData(values)
        let (_, a) = try Self.bits([y], fusion: true)
        let (_, b) = try Self.bits([y], fusion: false)
        #expect(a == b)
        #expect(a[0].contains { Float(bitPattern: $0).isNaN })
    }

    /// What stays apart: a product the direct kernel does not run (12-wide rows), a convolution output read twice,
    /// and 1-D pooling.
    @Test func leavesOtherPoolingsAlone() throws {
        var rng = SplitMix64(seed: 17)
        func names(_ y: Variable) throws -> [String] {
            try Compiler.plan([y], .inference, options: CompileOptions()).steps.map(\.function)
        }
        let small = try Variable(shape: [2, 3, 14, 14])
        #expect(try names(F.maxPooling(Self.conv(small, maps: 4, kernel: 3, &rng), kernel: [2, 2]))
                == ["Convolution", "MaxPooling"])
        let x = try Variable(shape: [2, 3, 16, 16])
        let h = try Self.conv(x, maps: 4, kernel: 3, pad: 1, &rng)
        #expect(try names(F.add2(F.maxPooling(h, kernel: [1, 1]), h)) == ["Convolution", "MaxPooling", "Add2"])
        let rows = try F.maxPooling(Self.conv(x, maps: 4, kernel: 3, pad: 1, &rng), kernel: [2])
        #expect(try names(rows) == ["Convolution", "MaxPooling"])
    }
}
