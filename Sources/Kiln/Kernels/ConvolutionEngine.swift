/// The three products of an N-D grouped convolution, shared by Convolution and Deconvolution.
///
/// In convolution terms: the *image* side is `[batch, channels, *image]` (convolution input), the *column*
/// side is `[batch, outmaps, *col]` (convolution output), the weight is `[outmaps, channels/group, *kernel]`.
/// - `forward`: col (+)= W * im2col(image) (+ bias per outmap)          (convolution forward)
/// - `backwardData`: image (+)= col2im(W^T * col) (+ bias per channel)  (convolution dx, deconvolution forward)
/// - `backwardWeight`: W (+)= col * im2col(image)^T summed over samples  (both weight gradients)
///
/// Deconvolution is the same engine with its output as the image side and its input as the column side
/// (its weight `(inmaps, outmaps/group, *kernel)` is exactly a convolution weight seen that way).
///
/// Samples run one after another; each group is one sgemm (OpenBLAS threads it) and im2col/col2im split
/// rows/channels over the threads. A 1x1 kernel with stride 1 and no padding skips im2col entirely.
final class ConvolutionEngine {
    let batch: Int
    let channels: Int
    let outmaps: Int
    let group: Int
    let cg: Int
    let mg: Int
    let kernelCount: Int
    let imageCount: Int
    let colCount: Int
    /// nil for the 1x1 / stride 1 / no padding case, where the columns are the image itself.
    let plan: Im2ColPlan?

    init(_ g: ConvGeometry) {
        batch = g.batch
        channels = g.channels
        outmaps = g.outmaps
        group = g.group
        cg = g.channels / g.group
        mg = g.outmaps / g.group
        kernelCount = g.kernel.reduce(1, *)
        imageCount = g.image.reduce(1, *)
        colCount = g.col.reduce(1, *)
        plan = g.isPointwise ? nil
            : Im2ColPlan(channels: cg, image: g.image, col: g.col, kernel: g.kernel, pad: g.pad,
                         stride: g.stride, dilation: g.dilation)
    }

    /// Column workspace for one group of one sample.
    static func workspaceBytes(_ g: ConvGeometry) -> Int {
        g.isPointwise ? 0 : (g.channels / g.group) * g.kernel.reduce(1, *) * g.col.reduce(1, *) * 4
    }

    /// `col = W * im2col(image) + bias` (or `+=` when accumulating).
    func forward(image: UnsafePointer<Float>, weight: UnsafePointer<Float>, col: UnsafeMutablePointer<Float>,
                 bias: UnsafePointer<Float>?, accumulate: Bool, workspace: UnsafeMutablePointer<Float>?) {
        let kk = cg * kernelCount
        let beta: Float = (accumulate || bias != nil) ? 1 : 0
        for n in 0..<batch {
            let xn = image + n * channels * imageCount
            let yn = col + n * outmaps * colCount
            if let bias {
                for m in 0..<outmaps {
                    let row = yn + m * colCount
                    let v = bias[m]
                    if accumulate {
                        for i in 0..<colCount { row[i] += v }
                    } else {
                        row.update(repeating: v, count: colCount)
                    }
                }
            }
            for g in 0..<group {
                let xg = xn + g * cg * imageCount
                var cols = xg
                if let plan, let workspace {
                    plan.im2col(xg, workspace)
                    cols = UnsafePointer(workspace)
                }
                Gemm.sgemm(m: mg, n: colCount, k: kk, a: weight + g * mg * kk, b: cols,
                           beta: beta, c: yn + g * mg * colCount)
            }
        }
    }

    /// `image = col2im(W^T * col) + bias` (or `+=` when accumulating).
    func backwardData(col: UnsafePointer<Float>, weight: UnsafePointer<Float>, image: UnsafeMutablePointer<Float>,
                      bias: UnsafePointer<Float>?, accumulate: Bool, workspace: UnsafeMutablePointer<Float>?) {
        let kk = cg * kernelCount
        for n in 0..<batch {
            let dyn = col + n * outmaps * colCount
            let dxn = image + n * channels * imageCount
            if let bias {
                for c in 0..<channels {
                    let row = dxn + c * imageCount
                    let v = bias[c]
                    if accumulate {
                        for i in 0..<imageCount { row[i] += v }
                    } else {
                        row.update(repeating: v, count: imageCount)
                    }
                }
            } else if !accumulate && plan != nil {
                dxn.update(repeating: 0, count: channels * imageCount)
            }
            for g in 0..<group {
                let w = weight + g * mg * kk
                let dyg = dyn + g * mg * colCount
                let dxg = dxn + g * cg * imageCount
                if let plan, let workspace {
                    Gemm.sgemm(transA: true, m: kk, n: colCount, k: mg, a: w, b: dyg, beta: 0, c: workspace)
                    plan.col2im(workspace, dxg)
                } else {
                    let beta: Float = (accumulate || bias != nil) ? 1 : 0
                    Gemm.sgemm(transA: true, m: cg, n: colCount, k: mg, a: w, b: dyg, beta: beta, c: dxg)
                }
            }
        }
    }

    /// `dW (+)= sum_n col_n * im2col(image_n)^T`.
    func backwardWeight(image: UnsafePointer<Float>, col: UnsafePointer<Float>, weightGrad: UnsafeMutablePointer<Float>,
                        accumulate: Bool, workspace: UnsafeMutablePointer<Float>?) {
        let kk = cg * kernelCount
        if batch == 0 {
            if !accumulate { weightGrad.update(repeating: 0, count: outmaps * kk) }
            return
        }
        for n in 0..<batch {
            let xn = image + n * channels * imageCount
            let dyn = col + n * outmaps * colCount
            let beta: Float = (n > 0 || accumulate) ? 1 : 0
            for g in 0..<group {
                let xg = xn + g * cg * imageCount
                var cols = xg
                if let plan, let workspace {
                    plan.im2col(xg, workspace)
                    cols = UnsafePointer(workspace)
                }
                Gemm.sgemm(transB: true, m: mg, n: kk, k: colCount, a: dyn + g * mg * colCount, b: cols,
                           beta: beta, c: weightGrad + g * mg * kk)
            }
        }
    }

    /// `forward` (no bias) and `backwardWeight` over the same image, sharing one im2col per sample and
    /// group (deconvolution's backward: dx from W * im2col(dy), dW from x * im2col(dy)^T). The two outputs
    /// must be different buffers.
    func forwardAndWeightGrad(image: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                              col: UnsafeMutablePointer<Float>, accumulate: Bool,
                              colValues: UnsafePointer<Float>, weightGrad: UnsafeMutablePointer<Float>,
                              accumulateWeight: Bool, workspace: UnsafeMutablePointer<Float>?) {
        let kk = cg * kernelCount
        if batch == 0 {
            if !accumulateWeight { weightGrad.update(repeating: 0, count: outmaps * kk) }
            return
        }
        let beta: Float = accumulate ? 1 : 0
        for n in 0..<batch {
            let xn = image + n * channels * imageCount
            let yn = col + n * outmaps * colCount
            let vn = colValues + n * outmaps * colCount
            let betaW: Float = (n > 0 || accumulateWeight) ? 1 : 0
            for g in 0..<group {
                let xg = xn + g * cg * imageCount
                var cols = xg
                if let plan, let workspace {
                    plan.im2col(xg, workspace)
                    cols = UnsafePointer(workspace)
                }
                Gemm.sgemm(m: mg, n: colCount, k: kk, a: weight + g * mg * kk, b: cols,
                           beta: beta, c: yn + g * mg * colCount)
                Gemm.sgemm(transB: true, m: mg, n: kk, k: colCount, a: vn + g * mg * colCount, b: cols,
                           beta: betaW, c: weightGrad + g * mg * kk)
            }
        }
    }

    /// `db[c] (+)= sum over samples and positions of t[n, c, :]` for `t` of shape `[batch, channels, count]`.
    static func channelSums(_ t: UnsafePointer<Float>, batch: Int, channels: Int, count: Int,
                            into db: UnsafeMutablePointer<Float>, accumulate: Bool) {
        if !accumulate { db.update(repeating: 0, count: channels) }
        for n in 0..<batch {
            for c in 0..<channels {
                let row = t + (n * channels + c) * count
                var s: Float = 0
                for i in 0..<count { s += row[i] }
                db[c] += s
            }
        }
    }
}

/// Sizes of one grouped N-D convolution in convolution terms (see `ConvolutionEngine`).
struct ConvGeometry {
    var batch: Int
    var channels: Int
    var outmaps: Int
    var group: Int
    var image: [Int]
    var col: [Int]
    var kernel: [Int]
    var pad: [Int]
    var stride: [Int]
    var dilation: [Int]

    var isPointwise: Bool {
        kernel.allSatisfy { $0 == 1 } && stride.allSatisfy { $0 == 1 } && pad.allSatisfy { $0 == 0 }
    }
}
