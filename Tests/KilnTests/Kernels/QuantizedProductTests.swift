import CKilnKernels
import Testing
@testable import Kiln
@testable import KilnGraph
@testable import KilnKernels

/// The integer products of quantized plans (`QuantizedProduct`, `CKilnKernels/QuantizedGemm.c`) against sums of
/// code products in Int from the definition of nnabla's Convolution and Affine, on every kernel path the CPU has:
/// groups, strides, padding, dilation, 1x1, signed and unsigned inputs held as codes or as floats on their grid,
/// depths that are not a multiple of the packing group, tails of rows and columns. The epilogue (bias, batch
/// normalisation, residual codes, ReLU, the next quantizer) against the float arithmetic of the separate steps.
@Suite(.serialized)
struct QuantizedProductTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var batch: Int, channels: Int, maps: Int, image: [Int], kernel = [3, 3], stride = [1, 1], pad = [1, 1],
            dilation = [1, 1], group = 1
        var testDescription: String { "n\(batch) \(channels)->\(maps) \(image) k\(kernel) s\(stride) p\(pad) d\(dilation) g\(group)" }
    }

    static let cases: [Case] = [
        Case(batch: 2, channels: 3, maps: 8, image: [8, 8]),
        Case(batch: 3, channels: 5, maps: 13, image: [9, 11], stride: [2, 2]),         // 13 maps: a 1-row tile tail
        Case(batch: 1, channels: 16, maps: 7, image: [6, 7], kernel: [1, 1], pad: [0, 0]),  // pointwise
        Case(batch: 2, channels: 4, maps: 6, image: [10, 12], kernel: [5, 3], pad: [2, 1], dilation: [2, 1]),
        Case(batch: 2, channels: 6, maps: 6, image: [7, 7], group: 3),
        Case(batch: 2, channels: 4, maps: 4, image: [9, 9], stride: [2, 1], group: 4),  // depthwise
        Case(batch: 1, channels: 1, maps: 3, image: [40, 37], kernel: [5, 5], pad: [0, 0]),  // depth 25, 1188 columns
        // Rows of 17 pixels at stride 2 (16 in one row, then blocks across rows), rows of 24 (a block that is two
        // runs of 8 in two rows): the packing's load patterns.
        Case(batch: 1, channels: 3, maps: 7, image: [9, 34], stride: [2, 2]),
        Case(batch: 1, channels: 3, maps: 5, image: [5, 24]),
    ]

    static func onPath<T>(_ path: String, threads: Int = 1, _ body: () throws -> T) throws -> T {
        #expect(kiln_q8_force_path(path) == 1, "path \(path)")
        defer { kiln_q8_force_path(nil) }
        return try Threads.with(threads) { try body() }
    }

    /// Random codes: unsigned in [0, 255] or signed in [-127, 127].
    static func codes(_ count: Int, signed: Bool, seed: UInt64) -> [Int] {
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { _ in signed ? Int(rng.next() % 255) - 127 : Int(rng.next() % 256) }
    }

    static func naiveConvolution(_ c: Case, x: [Int], w: [Int]) -> (sums: [Int], oh: Int, ow: Int) {
        let (h, wi) = (c.image[0], c.image[1])
        let oh = (h + 2 * c.pad[0] - c.dilation[0] * (c.kernel[0] - 1) - 1) / c.stride[0] + 1
        let ow = (wi + 2 * c.pad[1] - c.dilation[1] * (c.kernel[1] - 1) - 1) / c.stride[1] + 1
        let cg = c.channels / c.group, mg = c.maps / c.group
        var out = [Int](repeating: 0, count: c.batch * c.maps * oh * ow)
        for n in 0..<c.batch { for m in 0..<c.maps { for oy in 0..<oh { for ox in 0..<ow {
            var s = 0
            let g = m / mg
            for ci in 0..<cg { for i in 0..<c.kernel[0] { for j in 0..<c.kernel[1] {
                let y = oy * c.stride[0] - c.pad[0] + i * c.dilation[0], xx = ox * c.stride[1] - c.pad[1] + j * c.dilation[1]
                guard y >= 0, y < h, xx >= 0, xx < wi else { continue }
                let xv = x[((n * c.channels + g * cg + ci) * h + y) * wi + xx]
                let wv = w[((m * cg + ci) * c.kernel[0] + i) * c.kernel[1] + j]
                s += xv * wv
            } } }
            out[((n * c.maps + m) * oh + oy) * ow + ox] = s
        } } } }
        return (out, oh, ow)
    }

    /// Runs one case's product with float output: `acc * 2^-10` is exact, so the floats give the sums back.
    static func runConvolution(_ c: Case, signed: Bool, asCodes: Bool, seed: UInt64) throws -> (got: [Float], want: [Int]) {
        let xCodes = codes(c.batch * c.channels * c.image[0] * c.image[1], signed: signed, seed: seed)
        let wCodes = codes(c.maps * c.channels / c.group * c.kernel[0] * c.kernel[1], signed: true, seed: seed + 1)
        let (want, oh, ow) = naiveConvolution(c, x: xCodes, w: wCodes)
        let g = ConvGeometry(batch: c.batch, channels: c.channels, outmaps: c.maps, group: c.group, image: c.image,
                             col: [oh, ow], kernel: c.kernel, pad: c.pad, stride: c.stride, dilation: c.dilation)
        let p = try QuantizedProduct(convolution: g)
        let grid = QuantizedCodes(signed: signed, step: 1.0 / 16)
        let weights = wCodes.map { Float($0) / 64 }
        var out = [Float](repeating: .nan, count: want.count)
        var workspace = [UInt8](repeating: 0, count: p.workspaceBytes)
        let epilogue = QuantizedProduct.Epilogue(bias: nil, mean: nil, scale: nil, shift: nil, residual: nil,
                                                 residualStorage: .floats, activation: .none, output: .floats)
        if asCodes {
            let bytes = xCodes.map { UInt8(truncatingIfNeeded: $0) }
            bytes.withUnsafeBytes { x in
                p.run(input: x.baseAddress!, inputStorage: .codes(grid), weight: weights, weightGrid: QuantizedCodes(signed: true, step: 1.0 / 64),
                      output: &out, epilogue: epilogue, workspace: &workspace)
            }
        } else {
            let floats = xCodes.map { grid.value($0) }
            floats.withUnsafeBytes { x in
                p.run(input: x.baseAddress!, inputStorage: .floatsOnGrid(grid), weight: weights, weightGrid: QuantizedCodes(signed: true, step: 1.0 / 64),
                      output: &out, epilogue: epilogue, workspace: &workspace)
            }
        }
        return (out, want)
    }

    /// Every case, signed and unsigned inputs, codes and floats on the grid, one thread and two, on `path`; and the
    /// affine product.
    static func checkEveryProduct(on path: String) throws {
        for c in cases {
            for (k, signed) in [false, true].enumerated() {
                for threads in [1, 2] {
                    let r = try onPath(path, threads: threads) {
                        try runConvolution(c, signed: signed, asCodes: (k + threads) % 2 == 0, seed: 11)
                    }
                    let mismatches = zip(r.got, r.want).filter { $0.0 != Float($0.1) / 1024 }.count
                    #expect(mismatches == 0, "\(path) \(c.testDescription) signed=\(signed) threads=\(threads): \(mismatches) of \(r.want.count)")
                }
            }
        }
        let (batch, inputs, outputs) = (5, 37, 11)
        for signed in [false, true] {
            let x = codes(batch * inputs, signed: signed, seed: 3), w = codes(inputs * outputs, signed: true, seed: 4)
            let p = QuantizedProduct(affineBatch: batch, inputs: inputs, outputs: outputs)
            var out = [Float](repeating: .nan, count: batch * outputs)
            var workspace = [UInt8](repeating: 0, count: p.workspaceBytes)
            let bytes = x.map { UInt8(truncatingIfNeeded: $0) }, weights = w.map { Float($0) / 4 }
            let grid = QuantizedCodes(signed: signed, step: 0.5)
            let epilogue = QuantizedProduct.Epilogue(bias: nil, mean: nil, scale: nil, shift: nil, residual: nil,
                                                     residualStorage: .floats, activation: .none, output: .floats)
            try onPath(path) {
                bytes.withUnsafeBytes { xb in
                    p.run(input: xb.baseAddress!, inputStorage: .codes(grid), weight: weights, weightGrid: QuantizedCodes(signed: true, step: 0.25),
                          output: &out, epilogue: epilogue, workspace: &workspace)
                }
            }
            var bad = 0
            for n in 0..<batch { for m in 0..<outputs {
                var s = 0
                for k in 0..<inputs { s += x[n * inputs + k] * w[k * outputs + m] }
                if out[n * outputs + m] != Float(s) / 8 { bad += 1 }
            } }
            #expect(bad == 0, "affine \(path) signed=\(signed)")
        }
    }

    @Test func genericPath() throws { try Self.checkEveryProduct(on: "generic") }

    /// The VNNI paths' packed layouts and signed-code correction, multiplied in plain C: what those paths compute,
    /// on any CPU.
    @Test func vnniLayouts() throws {
        try Self.checkEveryProduct(on: "avx-vnni-layout")
        try Self.checkEveryProduct(on: "avx512-vnni-layout")
    }

    @Test(.enabled(if: kiln_q8_path_available("avx2") != 0, "this CPU lacks AVX2"))
    func avx2Path() throws { try Self.checkEveryProduct(on: "avx2") }

    @Test(.enabled(if: kiln_q8_path_available("avx-vnni") != 0, "this CPU lacks AVX-VNNI"))
    func avxVNNIPath() throws { try Self.checkEveryProduct(on: "avx-vnni") }

    @Test(.enabled(if: kiln_q8_path_available("avx512-vnni") != 0, "this CPU lacks AVX512-VNNI"))
    func avx512VNNIPath() throws { try Self.checkEveryProduct(on: "avx512-vnni") }

    /// The automatic choice is the widest path the CPU has, and a path the CPU lacks cannot be forced.
    @Test func automaticPathIsTheWidest() {
        let names: [String] = ["generic", "avx2", "avx-vnni", "avx512-vnni"]
        let available = names.filter { kiln_q8_path_available($0) != 0 }
        #expect(String(cString: kiln_q8_path_name(kiln_q8_current_path())) == available.last)
        for lacking in names.dropFirst() where kiln_q8_path_available(lacking) == 0 {
            #expect(kiln_q8_force_path(lacking) == 0)
            #expect(String(cString: kiln_q8_path_name(kiln_q8_current_path())) == available.last)
        }
        #expect(kiln_q8_force_path("no such path") == 0)
    }

    /// The whole epilogue against the float steps it replaces: `acc * scale + b`, `(v - mean) * s + t`, `+ residual`,
    /// ReLU, then FixedPointQuantize (nnabla's formula as Kiln's float kernel computes it) into codes and into floats.
    /// Quantizing floats into codes: the codes stand for exactly what FixedPointQuantize computes, halfway values,
    /// both clips, signed zeros and tails included; a NaN (no code) becomes 0.
    @Test(arguments: epiloguePaths)
    func quantizeMatchesFixedPointQuantize(path: String) throws {
        try #require(kiln_q8_force_path(path) == 1)
        defer { kiln_q8_force_path(nil) }
        var rng = SplitMix64(seed: 8)
        let step: Float = 1.0 / 8
        var x = (0..<203).map { _ in Float.random(in: -40...40, using: &rng) }
        x += [0, -0.0, 0.0625, -0.0625, 0.1875, -0.1875, 15.9375, 15.96875, 31.9375, -15.9375, .infinity, -.infinity]
        for signed in [false, true] {
            let q = FixedPointQuantize(sign: signed, n: 8, delta: Double(step))
            let (mx, mn) = q.bounds
            let forward = FixedPointQuantize.Forward(mx: mx, mn: mn, d: step)
            var codes = [UInt8](repeating: 0, count: x.count)
            let grid = QuantizedCodes(signed: signed, step: step)
            QuantizedProduct.quantize(x, count: x.count, grid: grid, into: &codes)
            let got = codes.map { grid.value(signed ? Int(Int8(bitPattern: $0)) : Int($0)) }
            #expect(got == x.map { forward($0) }, "signed \(signed)")
            var nan: [UInt8] = [7]
            QuantizedProduct.quantize([Float.nan], count: 1, grid: QuantizedCodes(signed: false, step: step), into: &nan)
            #expect(nan == [0])
        }
    }

    /// The epilogue's paths this CPU has: plain C, AVX2 vectors (the AVX2 and AVX-VNNI paths' epilogue), and
    /// AVX-512 vectors with AVX2 for what is left of a row (the AVX512-VNNI path's).
    static let epiloguePaths: [String] = ["generic", "avx2", "avx512-vnni"].filter { kiln_q8_path_available($0) != 0 }

    @Test(arguments: epiloguePaths)
    func epilogueMatchesTheSeparateFloatSteps(path: String) throws {
        try #require(kiln_q8_force_path(path) == 1)
        defer { kiln_q8_force_path(nil) }
        let count = 91  // five vectors of 16, one of 8 and a tail of 3
        var rng = SplitMix64(seed: 5)
        let acc = (0..<count).map { _ in Int32(Int(rng.next() % 20001) - 10000) }
        let residualCodes = (0..<count).map { _ in UInt8(rng.next() % 256) }
        let bias: [Float] = [0.3], mean: [Float] = [0.125], scale: [Float] = [1.7], shift: [Float] = [-0.4]
        let residualGrid = QuantizedCodes(signed: false, step: 1.0 / 32)
        let outGrid = QuantizedCodes(signed: false, step: 1.0 / 16)
        let quantizer = FixedPointQuantize(sign: false, n: 8, delta: 1.0 / 16)
        let (mx, mn) = quantizer.bounds
        let forward = FixedPointQuantize.Forward(mx: mx, mn: mn, d: 1.0 / 16)
        var want: [Float] = []
        for j in 0..<count {
            var v = Float(acc[j]) * (1.0 / 1024) + bias[0]
            v = (v - mean[0]) * scale[0] + shift[0]
            v = v + residualGrid.value(Int(residualCodes[j]))
            v = max(v, 0)
            want.append(forward(v))
        }
        for output in [QuantizedStorage.codes(outGrid), .floatsOnGrid(outGrid)] {
            var e = kiln_q8_epilogue()
            var codes = [UInt8](repeating: 0, count: count), floats = [Float](repeating: .nan, count: count)
            try bias.withUnsafeBufferPointer { b in try mean.withUnsafeBufferPointer { mu in
                try scale.withUnsafeBufferPointer { s in try shift.withUnsafeBufferPointer { t in
                    try residualCodes.withUnsafeBytes { r in
                        e.scale = 1.0 / 1024
                        e.bias = b.baseAddress; e.mean = mu.baseAddress; e.normScale = s.baseAddress; e.shift = t.baseAddress
                        e.residual = r.baseAddress; e.residualKind = Int32(KILN_Q8_U8); e.residualGrid = residualGrid.kernelGrid
                        e.activation = 1
                        e.output = output.kernelKind; e.out = outGrid.kernelGrid
                        if case .codes = output {
                            kiln_q8_finish_row(&e, 0, acc, count, &codes, 0, 1)
                        } else {
                            kiln_q8_finish_row(&e, 0, acc, count, &floats, 0, 1)
                        }
                        try #require(e.output != 0)
                    }
                } }
            } }
            let got = { () -> [Float] in
                if case .codes = output { return codes.map { outGrid.value(Int($0)) } }
                return floats
            }()
            #expect(got == want, "\(output)")
            // The values span the quantizer's range: some clip at the top, some at 0, most land between.
            #expect(want.contains(mx) && want.contains(0) && want.contains { $0 > 0 && $0 < mx })
        }
    }
}
