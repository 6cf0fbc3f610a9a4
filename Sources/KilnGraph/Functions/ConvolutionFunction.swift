import KilnCore
import KilnKernels

/// The shared implementation of Convolution and Deconvolution. Both run the same `ConvolutionEngine`, the
/// deconvolution with its output as the engine's image side and its input as the column side; so they share
/// output types, workspace, what backward reads and how their buffers are bound and checked. They differ in
/// `geometry` (how their shapes map onto the engine) and in which engine products their kernels call. The
/// `public` members below are the two functions' `Function` witnesses.
protocol ConvolutionFunction: Function {
    /// The engine geometry and the output shape for these input types.
    func geometry(_ inputs: [TensorType]) throws -> (ConvGeometry, [Int])
    /// The forward kernel over checked buffers.
    func forwardKernel(_ f: ConvolutionForwardBuffers) -> Kernel
    /// The backward kernel over checked buffers.
    func backwardKernel(_ g: ConvolutionBackwardBuffers) -> Kernel
}

extension ConvolutionFunction {
    public func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        [TensorType(try geometry(inputs).1, .float32)]
    }

    public func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) {
        ([true, true, false].prefix(inputCount).map { $0 }, [Bool](repeating: false, count: outputCount))
    }

    public func forwardWorkspace(_ b: TypeBinding) -> Int {
        (try? geometry(b.inputs)).map { ConvolutionEngine.workspaceBytes($0.0) } ?? 0
    }

    public func backwardWorkspace(_ b: TypeBinding) -> Int { forwardWorkspace(b) }

    public func makeForward(_ b: ForwardBinding) throws -> Kernel { forwardKernel(try forwardBuffers(b)) }

    public func makeBackward(_ b: BackwardBinding) throws -> Kernel { backwardKernel(try backwardBuffers(b)) }

    /// The engine and buffers of a forward kernel; throws when the workspace the engine needs is missing.
    func forwardBuffers(_ b: ForwardBinding) throws -> ConvolutionForwardBuffers {
        let engine = ConvolutionEngine(try geometry(b.inputs.map { $0.type }).0)
        let x = b.inputs[0].f, w = b.inputs[1].f, y = b.outputs[0].f
        let bias = b.inputs.count == 3 ? b.inputs[2].f : nil
        let ws = b.workspace?.assumingMemoryBound(to: Float.self)
        if engine.plan != nil && ws == nil { throw error("missing workspace") }
        return ConvolutionForwardBuffers(engine: engine, x: x, w: w, y: y, bias: bias, workspace: ws)
    }

    /// The engine and buffers of a backward kernel; throws when a gradient wanted lacks the value it reads
    /// or the workspace the engine needs is missing.
    func backwardBuffers(_ b: BackwardBinding) throws -> ConvolutionBackwardBuffers {
        let engine = ConvolutionEngine(try geometry(b.inputTypes).0)
        let dy = b.outputGrads[0].f
        let dx = b.inputGrads[0]?.f, dw = b.inputGrads[1]?.f
        let db = b.inputGrads.count == 3 ? b.inputGrads[2]?.f : nil
        let x = b.inputs[0]?.f, w = b.inputs[1]?.f
        let ws = b.workspace?.assumingMemoryBound(to: Float.self)
        if dx != nil && w == nil || dw != nil && x == nil { throw error("backward needs the input and weight values") }
        if engine.plan != nil && (dx != nil || dw != nil) && ws == nil { throw error("missing workspace") }
        return ConvolutionBackwardBuffers(engine: engine, dy: dy, dx: dx, dw: dw, db: db, accumulate: b.accumulate,
                                          x: x, w: w, workspace: ws)
    }
}

/// A Convolution's or Deconvolution's forward: its engine, input x, weight w, output y and optional bias.
struct ConvolutionForwardBuffers {
    let engine: ConvolutionEngine
    let x: UnsafeMutablePointer<Float>, w: UnsafeMutablePointer<Float>, y: UnsafeMutablePointer<Float>
    let bias: UnsafeMutablePointer<Float>?
    let workspace: UnsafeMutablePointer<Float>?
}

/// A Convolution's or Deconvolution's backward: the output gradient dy, the gradients wanted (nil where not),
/// whether each accumulates, and the input and weight values where backward reads them.
struct ConvolutionBackwardBuffers {
    let engine: ConvolutionEngine
    let dy: UnsafeMutablePointer<Float>
    let dx: UnsafeMutablePointer<Float>?, dw: UnsafeMutablePointer<Float>?, db: UnsafeMutablePointer<Float>?
    let accumulate: [Bool]
    let x: UnsafeMutablePointer<Float>?, w: UnsafeMutablePointer<Float>?
    let workspace: UnsafeMutablePointer<Float>?
}
