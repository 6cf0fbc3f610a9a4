import CKilnKernels
import KilnCore

/// How an operand or result of a quantized product is held in memory.
public enum QuantizedStorage: Hashable, Sendable, CustomStringConvertible {
    /// Plain float32 values.
    case floats
    /// float32 values known to lie on a grid (outputs of a quantizer, kept as floats for a float reader).
    case floatsOnGrid(QuantizedCodes)
    /// 8-bit codes.
    case codes(QuantizedCodes)

    /// The grid, if the values lie on one.
    public var grid: QuantizedCodes? {
        switch self {
        case .floats: return nil
        case .floatsOnGrid(let c), .codes(let c): return c
        }
    }

    public var description: String {
        switch self {
        case .floats: return "f32"
        case .floatsOnGrid(let c): return "f32 on \(c)"
        case .codes(let c): return "\(c)"
        }
    }

    /// The C kernels' name for it (`KILN_Q8_*`): codes by signedness, floats on a grid as rounded floats.
    var kernelKind: Int32 {
        switch self {
        case .floats: return Int32(KILN_Q8_FLOAT)
        case .floatsOnGrid: return Int32(KILN_Q8_FLOAT_GRID)
        case .codes(let c): return Int32(c.signed ? KILN_Q8_S8 : KILN_Q8_U8)
        }
    }
}

extension QuantizedCodes {
    /// The C kernels' description of the grid.
    var kernelGrid: kiln_q8_grid {
        var g = kiln_q8_grid()
        g.step = step
        g.zeroPoint = zeroPoint
        g.minCode = minCode
        g.maxCode = maxCode
        if case .linear(let even) = rounding {
            g.linear = 1
            g.halfEven = even ? 1 : 0
        }
        return g
    }

    var kernelKind: Int32 { Int32(signed ? KILN_Q8_S8 : KILN_Q8_U8) }
}

/// The integer product of a quantized convolution (2-D, any groups, strides, padding, dilation) or affine:
/// 8-bit input codes times 8-bit weight codes into 32-bit sums (`CKilnKernels/QuantizedGemm.c`), then the float
/// epilogue (`kiln_q8_epilogue`), which writes floats or the next quantizer's codes.
///
/// Weights are read as floats on their quantizer's grid and packed into codes on every run (a user may change
/// the parameters between runs); inputs are codes, or floats on a grid converted on the way. Each thread takes
/// whole samples of a convolution; an affine is one product.
package struct QuantizedProduct {
    enum Kind {
        case convolution(kiln_conv_shape, groups: Int, pointwise: Bool)
        case affine
    }

    let kind: Kind
    let batch: Int
    /// Output maps (convolution) or units (affine), all groups.
    package let outputs: Int
    /// Per group: rows (maps), depth (inputs per output) and columns (pixels per sample, or samples) of the product.
    let rows: Int, depth: Int, columns: Int
    let sampleIn: Int
    let packedABytes: Int
    let sliceBytes: Int
    let parts: Int

    package init(convolution g: ConvGeometry) throws {
        guard g.image.count == 2 else {
            throw KilnError.invalidFunction(function: "Convolution", reason: "integer kernels take 2-D convolutions only")
        }
        let cg = g.channels / g.group
        let shape = kiln_conv_shape(channels: cg, maps: g.outmaps / g.group, h: g.image[0], w: g.image[1], oh: g.col[0],
                                    ow: g.col[1], kh: g.kernel[0], kw: g.kernel[1], sh: g.stride[0], sw: g.stride[1],
                                    ph: g.pad[0], pw: g.pad[1], dh: g.dilation[0], dw: g.dilation[1], path: -1)
        self.init(kind: .convolution(shape, groups: g.group, pointwise: g.isPointwise), batch: g.batch,
                  outputs: g.outmaps, rows: g.outmaps / g.group, depth: cg * g.kernel[0] * g.kernel[1],
                  columns: g.col[0] * g.col[1], sampleIn: g.channels * g.image[0] * g.image[1])
    }

    /// `y[n][m] = sum over k of x[n][k] * w[k][m]` (nnabla's Affine with its input flattened from the base axis).
    package init(affineBatch batch: Int, inputs: Int, outputs: Int) {
        self.init(kind: .affine, batch: batch, outputs: outputs, rows: outputs, depth: inputs, columns: batch,
                  sampleIn: inputs)
    }

    private init(kind: Kind, batch: Int, outputs: Int, rows: Int, depth: Int, columns: Int, sampleIn: Int) {
        self.kind = kind
        self.batch = batch
        self.outputs = outputs
        self.rows = rows
        self.depth = depth
        self.columns = columns
        self.sampleIn = sampleIn
        let groups: Int
        if case .convolution(_, let gs, _) = kind { groups = gs } else { groups = 1 }
        // The packed formats differ by path; size for the largest.
        let perGroup = (0...5).map { kiln_q8_packed_a_bytes(Int32($0), rows, depth) }.max() ?? 0
        packedABytes = Self.aligned(perGroup) * groups
        var slice = Self.aligned(sampleIn)                                          // a sample's codes
        if case .convolution(var shape, _, false) = kind {
            slice += Self.aligned(kiln_q8_padded_bytes(&shape)) + Self.aligned(depth * columns)  // padded, its columns
        }
        slice += Self.aligned(kiln_q8_packed_b_bytes_max(depth, columns))          // packed columns
        slice += Self.aligned(rows * columns * 4)                                   // 32-bit sums
        if case .convolution(_, _, false) = kind { slice += Self.aligned(depth * 8) }  // the k rows' offsets
        sliceBytes = slice
        if case .convolution = kind { parts = max(1, min(Threads.count, batch)) } else { parts = 1 }
    }

    static func aligned(_ bytes: Int) -> Int { (bytes + 63) / 64 * 64 }

    /// `count` floats put on `grid` (its quantizer's rounding and saturation) as its codes.
    package static func quantize(_ x: UnsafePointer<Float>, count: Int, grid: QuantizedCodes, into out: UnsafeMutableRawPointer) {
        var g = grid.kernelGrid
        kiln_q8_quantize(x, count, &g, grid.kernelKind, out)
    }

    /// Codes back to the floats they stand for.
    package static func dequantize(_ codes: UnsafeRawPointer, _ grid: QuantizedCodes, count: Int,
                                   into out: UnsafeMutablePointer<Float>) {
        var g = grid.kernelGrid
        kiln_q8_dequantize(codes, grid.kernelKind, count, &g, out)
    }

    /// `out = quantize(relu?(a + b))` element by element: operands floats or codes as their storage says, the
    /// sum put on `output`'s grid (codes, or the floats they stand for).
    package static func add(count: Int, _ a: UnsafeRawPointer, _ aStorage: QuantizedStorage, _ b: UnsafeRawPointer,
                            _ bStorage: QuantizedStorage, relu: Bool, output: QuantizedStorage, into out: UnsafeMutableRawPointer) {
        let none = QuantizedCodes(signed: true, step: 1)
        var ag = (aStorage.grid ?? none).kernelGrid, bg = (bStorage.grid ?? none).kernelGrid
        var og = (output.grid ?? none).kernelGrid
        func kind(_ s: QuantizedStorage) -> Int32 {
            if case .codes(let c) = s { return c.kernelKind }
            return Int32(KILN_Q8_FLOAT)
        }
        kiln_q8_add(count, a, kind(aStorage), &ag, b, kind(bStorage), &bg, relu ? 1 : 0, &og, output.kernelKind, out)
    }

    /// Packed weights, then the rows' zero-point offsets, then each part's scratch.
    var offsetsBytes: Int { Self.aligned(outputs * 4) }
    package var workspaceBytes: Int { packedABytes + offsetsBytes + sliceBytes * parts }

    /// The per-output-map (or unit) parts of the epilogue; `residual` and `output` index like the output tensor.
    package struct Epilogue {
        package var bias: UnsafePointer<Float>?
        package var mean: UnsafePointer<Float>?, scale: UnsafePointer<Float>?, shift: UnsafePointer<Float>?
        /// A grid the value is put on before the residual is added.
        package var snap: QuantizedCodes?
        package var residual: UnsafeRawPointer?
        package var residualStorage: QuantizedStorage
        package var activation: ConvEpilogue.Activation
        package var output: QuantizedStorage

        package init(bias: UnsafePointer<Float>?, mean: UnsafePointer<Float>?, scale: UnsafePointer<Float>?,
                     shift: UnsafePointer<Float>?, snap: QuantizedCodes? = nil, residual: UnsafeRawPointer?,
                     residualStorage: QuantizedStorage, activation: ConvEpilogue.Activation, output: QuantizedStorage) {
            self.bias = bias
            self.snap = snap
            self.mean = mean
            self.scale = scale
            self.shift = shift
            self.residual = residual
            self.residualStorage = residualStorage
            self.activation = activation
            self.output = output
        }
    }

    /// Runs the product: `input` stored as `inputStorage` says (codes, or floats on that grid), `weight` floats
    /// quantized here to `weightGrid`, its codes within [-127, 127] (weights already on that grid keep their
    /// values). The product of codes is scaled by `rowScales[row]` when given (a
    /// weight quantized per output map), else by the input's step times the weight's.
    package func run(input: UnsafeRawPointer, inputStorage: QuantizedStorage, weight: UnsafePointer<Float>,
                     weightGrid: QuantizedCodes, rowScales: UnsafePointer<Float>? = nil,
                     output: UnsafeMutableRawPointer, epilogue: Epilogue, workspace: UnsafeMutableRawPointer) {
        let weightStep = weightGrid.step, low = weightGrid.minCode, high = weightGrid.maxCode
        guard let grid = inputStorage.grid else { return }
        let path = kiln_q8_current_path()
        let offsets = (workspace + packedABytes).assumingMemoryBound(to: Int32.self)
        var e = kiln_q8_epilogue()
        e.scale = grid.step * weightStep
        e.rowScale = rowScales
        e.rowOffset = grid.zeroPoint == 0 ? nil : UnsafePointer(offsets)
        e.bias = epilogue.bias
        e.mean = epilogue.mean
        e.normScale = epilogue.scale
        e.shift = epilogue.shift
        if let snap = epilogue.snap {
            e.snap = 1
            e.mid = snap.kernelGrid
        }
        e.residual = epilogue.residual
        e.residualKind = epilogue.residual == nil ? Int32(KILN_Q8_NONE) : epilogue.residualStorage.kernelKind
        e.residualGrid = (epilogue.residualStorage.grid ?? QuantizedCodes(signed: true, step: 1)).kernelGrid
        e.activation = epilogue.activation == .none ? 0 : epilogue.activation == .relu ? 1 : 2
        e.output = epilogue.output.kernelKind
        e.out = (epilogue.output.grid ?? QuantizedCodes(signed: true, step: 1)).kernelGrid
        let job = Job(p: self, path: path, input: input, inputStorage: inputStorage, grid: grid, output: output,
                      epilogue: e, workspace: workspace)
        switch kind {
        case .affine:
            kiln_q8_pack_a(path, rows, depth, weight, 1, rows, weightStep, low, high, workspace)
            if grid.zeroPoint != 0 { kiln_q8_row_offsets(path, rows, depth, workspace, grid.zeroPoint, offsets) }
            job.affine()
        case .convolution(_, let groups, _):
            let perGroup = packedABytes / groups
            for g in 0..<groups {
                kiln_q8_pack_a(path, rows, depth, weight + g * rows * depth, depth, 1, weightStep, low, high,
                               workspace + g * perGroup)
                if grid.zeroPoint != 0 {
                    kiln_q8_row_offsets(path, rows, depth, workspace + g * perGroup, grid.zeroPoint, offsets + g * rows)
                }
            }
            Threads.claims(batch, threads: min(parts, Threads.count), job)
        }
    }

    /// One run's fixed arguments: the affine product, or one sample of a convolution per part.
    private struct Job: ParallelSlotPart {
        let p: QuantizedProduct
        let path: Int32
        let input: UnsafeRawPointer
        let inputStorage: QuantizedStorage
        let grid: QuantizedCodes
        let output: UnsafeMutableRawPointer
        let epilogue: kiln_q8_epilogue
        let workspace: UnsafeMutableRawPointer

        /// Where a thread's scratch parts start: the sample's codes, one group padded and its columns, the packed
        /// columns, the sums, the k rows' offsets (packing straight from the padded sample).
        func scratch(_ slot: Int) -> (codes: UnsafeMutableRawPointer, padded: UnsafeMutableRawPointer,
                                      cols: UnsafeMutableRawPointer, packed: UnsafeMutableRawPointer,
                                      sums: UnsafeMutablePointer<Int32>, offsets: UnsafeMutablePointer<Int>) {
            let base = workspace + p.packedABytes + p.offsetsBytes + slot * p.sliceBytes
            let padded = base + QuantizedProduct.aligned(p.sampleIn)
            var cols = padded
            if case .convolution(var shape, _, false) = p.kind { cols += QuantizedProduct.aligned(kiln_q8_padded_bytes(&shape)) }
            var packed = cols
            if case .convolution(_, _, false) = p.kind { packed += QuantizedProduct.aligned(p.depth * p.columns) }
            let sums = packed + QuantizedProduct.aligned(kiln_q8_packed_b_bytes_max(p.depth, p.columns))
            let offsets = sums + QuantizedProduct.aligned(p.rows * p.columns * 4)
            return (base, padded, cols, packed, sums.assumingMemoryBound(to: Int32.self), offsets.assumingMemoryBound(to: Int.self))
        }

        var sourceKind: Int32 {
            if case .codes = inputStorage { return grid.kernelKind }
            return Int32(KILN_Q8_FLOAT)
        }

        func affine() {
            let s = scratch(0)
            kiln_q8_pack_b(path, p.depth, p.columns, input, sourceKind, grid.signed ? 1 : 0, 1, p.depth, 1 / grid.step,
                           grid.zeroPoint, s.packed)
            kiln_q8_gemm(path, p.rows, p.columns, p.depth, workspace, s.packed, grid.signed ? 1 : 0, s.sums, p.columns)
            var e = epilogue
            for r in 0..<p.rows {
                kiln_q8_finish_row(&e, r, s.sums + r * p.columns, p.columns, output, r, p.outputs)
            }
        }

        func callAsFunction(_ n: Int, slot: Int) {
            guard case .convolution(let shape, let groups, let pointwise) = p.kind else { return }
            let s = scratch(slot)
            let codeKind = grid.kernelKind
            // The sample as codes: in place when stored so, else rounded onto its grid (exact: the values lie on it).
            let sample: UnsafeRawPointer
            if case .codes = inputStorage {
                sample = input + n * p.sampleIn
            } else {
                let x = input.assumingMemoryBound(to: Float.self) + n * p.sampleIn
                var g = grid.kernelGrid
                kiln_q8_quantize(x, p.sampleIn, &g, codeKind, s.codes)
                sample = UnsafeRawPointer(s.codes)
            }
            let perGroup = p.packedABytes / groups, planeIn = p.sampleIn / groups
            let padCode = UInt8(truncatingIfNeeded: grid.zeroPoint)
            var e = epilogue
            for g in 0..<groups {
                let groupIn = sample + g * planeIn
                var cols = groupIn
                var packed = false
                if !pointwise {
                    var sh = shape
                    let padded = s.padded.assumingMemoryBound(to: UInt8.self)
                    kiln_q8_pad(&sh, groupIn.assumingMemoryBound(to: UInt8.self), padCode, padded)
                    // Columns packed straight from the padded sample where the path can, else made, then packed.
                    packed = kiln_q8_pack_conv(path, &sh, padded, grid.signed ? 1 : 0, s.offsets, s.packed) == 1
                    if !packed {
                        kiln_q8_im2col_padded(&sh, padded, s.cols.assumingMemoryBound(to: UInt8.self))
                        cols = UnsafeRawPointer(s.cols)
                    }
                }
                if !packed {
                    kiln_q8_pack_b(path, p.depth, p.columns, cols, codeKind, grid.signed ? 1 : 0, p.columns, 1, 1, 0, s.packed)
                }
                kiln_q8_gemm(path, p.rows, p.columns, p.depth, workspace + g * perGroup, s.packed, grid.signed ? 1 : 0,
                             s.sums, p.columns)
                for r in 0..<p.rows {
                    let m = g * p.rows + r
                    kiln_q8_finish_row(&e, m, s.sums + r * p.columns, p.columns, output, (n * p.outputs + m) * p.columns, 1)
                }
            }
        }
    }
}
