import CKilnKernels
import Testing
@testable import Kiln

/// The Layout pass (`CompileOptions.layouts`): which convolution outputs it stores in padded planes, that plans
/// with them compute the dense plans' values bit for bit (NaNs included, on both tile paths, 1 and 2 threads,
/// batch 1 and more), and that dumps show the layouts.
@Suite(.serialized)
struct LayoutTests {
    static func fill(_ v: Variable, _ rng: inout SplitMix64, _ range: ClosedRange<Float>) throws {
        try FusionTests.fill(v, &rng, range)
    }

    /// The roots' bits from an inference plan with or without layouts (verified, and run).
    static func bits(_ roots: [Variable], layouts: Bool) throws -> (Plan, [[UInt32]]) {
        var options = CompileOptions()
        options.layouts = layouts
        let exe = try Compiler.compile(roots, .inference, options: options)
        try exe.plan.verify()
        try exe.run()
        return (exe.plan, roots.map { $0.d.map(\.bitPattern) })
    }

    static func padded(_ plan: Plan) -> [PlanBuffer] { plan.buffers.filter { $0.layout != nil } }

    /// ResNet-20: every block's first output, and every block input that the next block's first convolution
    /// reads at stride 1 and its second adds as the residual (the stem's and blocks 0 and 1 of each stage: 3 + 2
    /// + 2), is stored padded; what a stride-2 convolution, the projection shortcut or the pooling reads is not. On
    /// every kernel path ("" is the widest the CPU runs).
    @Test(arguments: [(3, 1, ""), (1, 2, ""), (2, 2, "generic"), (3, 1, "generic"), (2, 1, "avx2+fma"), (1, 2, "avx2+fma")])
    func resnetIsBitIdentical(_ batch: Int, _ threads: Int, _ path: String) throws {
        try Parameters.isolated {
            let model = try FusionTests.randomResNet(batchSize: batch, seed: 11)
            let (dense, reference) = try Self.bits([model.prediction], layouts: false)
            if !path.isEmpty { kiln_tile_force_path(path) }
            defer { kiln_tile_force_path(nil) }
            let (plan, a) = try Threads.with(threads) { try Self.bits([model.prediction], layouts: true) }
            #expect(a == reference)
            #expect(Self.padded(dense).isEmpty)
            let padded = Self.padded(plan)
            #expect(padded.count == 9 + 3 + 2 + 2)
            #expect(padded.allSatisfy { $0.kind == .activation && $0.layout?.top == 1 && $0.layout?.left == 1 })
            // Each padded value is the whole set of its planes with their borders: (h + 2)(w + 3) floats a plane.
            for b in padded {
                let s = b.type.shape
                #expect(b.storedByteCount == (s[0] * s[1] * (s[2] + 2) * (s[3] + 3) + 32) * 4)
            }
            // The block outputs still take over their residual's memory (both padded alike).
            #expect(plan.aliases.keys.contains { plan.buffers[$0].layout != nil })
        }
    }

    struct Case: CustomTestStringConvertible, Sendable {
        /// What reads the first convolution's output besides the second convolution.
        var other = "none"
        var kernel = [3, 3], pad = [1, 1], stride = 1, width = 16
        var padded = true
        var testDescription: String { "other \(other) kernel \(kernel) pad \(pad) stride \(stride) width \(width)" }
    }

    /// Two convolutions (BN and ReLU after the first), the first's output read by the second and sometimes by
    /// something else; a NaN and infinities among the inputs. Padded only where every reader takes padded planes.
    @Test(arguments: [
        Case(), Case(kernel: [3, 5], pad: [1, 2]), Case(kernel: [5, 5], pad: [2, 2]), Case(width: 24),
        Case(other: "mulScalar", padded: false), Case(other: "root", padded: false),
        Case(other: "conv pad 2", padded: false), Case(other: "conv pad 1"), Case(stride: 2, padded: false),
        Case(pad: [0, 0], padded: false),
    ])
    func pairIsBitIdentical(_ c: Case) throws {
        var rng = SplitMix64(seed: 9)
        let x = try Variable(shape: [2, 4, 9, c.width])
        var values = (0..<x.shape.reduce(1, *)).map { _ in Float.random(in: -1...1, using: &rng) }
        values[3] = .nan; values[50] = .infinity; values[101] = -.infinity
        try x.setData(values)
        // Each convolution with a ReLU after it: a lone convolution is no fused step, and only those read padded planes.
        func conv(_ h: Variable, kernel: [Int], pad: [Int], stride: Int = 1) throws -> Variable {
            let w = try Variable(shape: [8, h.shape[1]] + kernel)
            try Self.fill(w, &rng, -1...1)
            return try F.relu(F.convolution(h, w, nil, pad: pad, stride: [stride, stride]))
        }
        let p = try (0..<4).map { _ in try Variable(shape: [1, 8, 1, 1]) }
        try Self.fill(p[0], &rng, -1...1); try Self.fill(p[1], &rng, -2...2); try Self.fill(p[2], &rng, -1...1)
        try Self.fill(p[3], &rng, 0.1...3)
        let w0 = try Variable(shape: [8, 4, 3, 3])
        try Self.fill(w0, &rng, -1...1)
        let first = try F.relu(F.batchNormalization(F.convolution(x, w0, nil, pad: [1, 1]), p[0], p[1], p[2], p[3],
                                                    batchStat: false))
        var roots = [try F.mulScalar(conv(first, kernel: c.kernel, pad: c.pad, stride: c.stride), val: 2)]
        switch c.other {
        case "mulScalar": roots.append(try F.mulScalar(first, val: 3))
        case "root": roots.append(first)
        case "conv pad 2": roots.append(try F.mulScalar(conv(first, kernel: [5, 5], pad: [2, 2]), val: 3))
        case "conv pad 1": roots.append(try F.mulScalar(conv(first, kernel: [3, 3], pad: [1, 1]), val: 3))
        default: break
        }
        let (_, reference) = try Self.bits(roots, layouts: false)
        let (plan, a) = try Self.bits(roots, layouts: true)
        #expect(a == reference)
        #expect(a[0].contains { Float(bitPattern: $0).isNaN })
        let padded = Self.padded(plan)
        #expect(padded.count == (c.padded ? 1 : 0))
        if c.padded {
            #expect(padded.first?.layout == PaddedPlanes(height: 9, width: c.width, top: c.pad[0], left: c.pad[1]))
        }
        // Every path agrees: the generic tiles and epilogue, and two threads.
        kiln_tile_force_path("generic")
        let (_, g) = try Self.bits(roots, layouts: true)
        kiln_tile_force_path(nil)
        #expect(g == reference)
        let (_, t) = try Threads.with(2) { try Self.bits(roots, layouts: true) }
        #expect(t == reference)
    }

    /// The text dump names each padded buffer's layout and marks it in the memory map; the JSON has it too.
    @Test func dumpsShowLayouts() throws {
        try Parameters.isolated {
            let model = try FusionTests.randomResNet(batchSize: 2, seed: 12)
            var options = CompileOptions()
            options.layouts = true
            let plan = try Compiler.plan([model.prediction], .inference, options: options)
            let text = plan.dump()
            #expect(text.contains("stage1/0/ReLU float32[2,16,32,32] in planes padded 1x1 @"))
            #expect(text.contains("p live padded planes"))
            #expect(text.split(separator: "\n").contains { $0.contains("|") && $0.contains("p") && !$0.contains("memory map") })
            #expect(plan.json().serialized().contains("\"layout\": \"planes padded 1x1\""))
            options.layouts = false
            #expect(!(try Compiler.plan([model.prediction], .inference, options: options).dump().contains("padded")))
        }
    }
}
