import KilnCore
import KilnGraph
import KilnKernels

/// Which values are stored in another layout than nnabla's dense one: convolution outputs kept in the padded
/// planes their readers' direct kernel reads (`PaddedPlanes`).
///
/// Contract: runs on the steps after `Quantization`, for inference plans with clear_buffer, fusion, float
/// precision and `layouts` on; otherwise returns them unchanged. Changes no value (the kernels read and write the
/// same floats, at other places) and moves no step.
///
/// - A value is stored in **padded planes** when it is the 4-D output of a `FusedConvolution` step without
///   pooling whose product runs on the direct kernel, is neither a root nor persistent, and every step reading it
///   is such a step that either reads it as x at stride 1 with padding (all with the same padding, at least one)
///   or adds it as its residual. Its producer then writes each plane with its border of zeros, and the steps
///   reading it as x skip the padded copy of every sample they would make otherwise.
/// - Every other value keeps nnabla's layout: plan inputs, outputs, parameters, and any value some other function
///   reads. So no reorder step is ever needed: a value is only laid out differently where every reader takes it.
/// - The steps learn the layouts of what they read and write (`FusedConvolution.inputPlanes`, `residualPlanes`,
///   `outputPlanes`); one whose residual and output are laid out differently does not write in place of it.
enum Layout {
    typealias Key = GraphCollector.ValueKey

    struct Result {
        var steps: [Fusion.Step]
        var layouts: [Key: PaddedPlanes]
    }

    static func apply(_ steps: [Fusion.Step], mode: PlanMode, options: CompileOptions, roots: [Variable]) -> Result {
        guard mode == .inference, options.clearBuffer, options.fusion, options.layouts, options.precision == .float else {
            return Result(steps: steps, layouts: [:])
        }
        let rootKeys = Set(roots.map { Key($0) })
        var reads: [Key: [(step: Int, input: Int)]] = [:]
        for (i, step) in steps.enumerated() {
            for (k, v) in step.readValues.enumerated() { reads[Key(v), default: []].append((i, k)) }
        }
        // The fused convolutions whose product runs on the direct kernel (padded planes are theirs alone), with the
        // planes each would read its x from.
        let direct: [(f: FusedConvolution, input: PaddedPlanes?)?] = steps.map { step in
            guard let f = step.fused as? FusedConvolution, f.pooling == nil,
                  let g = try? f.geometry(step.readValues.map { $0.type }),
                  ConvolutionEngine.runsDirectForward(g) else { return nil }
            return (f, ConvolutionEngine.paddedInputPlanes(g))
        }
        var layouts: [Key: PaddedPlanes] = [:]
        for (i, step) in steps.enumerated() {
            guard direct[i] != nil, let last = step.nodes.last, last.outputTypes.count == 1,
                  last.outputTypes[0].rank == 4, last.outputs[0]?.persistent != true else { continue }
            let key = Key.output(node: ObjectIdentifier(last), index: 0)
            guard !rootKeys.contains(key), let readers = reads[key],
                  let planes = commonPlanes(readers, direct: direct) else { continue }
            layouts[key] = planes
        }
        var out = steps
        for (i, step) in steps.enumerated() {
            guard var f = direct[i]?.f, let last = step.nodes.last else { continue }
            let values = step.readValues
            f.inputPlanes = layouts[Key(values[0])]
            f.residualPlanes = f.residualIndex.flatMap { layouts[Key(values[$0])] }
            f.outputPlanes = layouts[Key.output(node: ObjectIdentifier(last), index: 0)]
            out[i].fused = f
        }
        return Result(steps: out, layouts: layouts)
    }

    /// The padded planes every reader takes, if each reads the value as x of a stride-1 direct product with the
    /// same padding or as its residual, and at least one reads it as x; nil otherwise.
    private static func commonPlanes(_ readers: [(step: Int, input: Int)],
                                     direct: [(f: FusedConvolution, input: PaddedPlanes?)?]) -> PaddedPlanes? {
        var planes: PaddedPlanes?
        for r in readers {
            guard let reader = direct[r.step] else { return nil }
            if r.input == 0 {
                guard let p = reader.input, planes == nil || planes == p else { return nil }
                planes = p
            } else if r.input != reader.f.residualIndex {
                return nil
            }
        }
        return planes
    }
}
