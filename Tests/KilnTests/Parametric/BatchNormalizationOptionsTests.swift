import Foundation
import Testing
@testable import Kiln

/// `noScale` / `noBias` on the batch-normalisation classes, as nnabla's `PF.batch_normalization(no_scale=,
/// no_bias=)`: the left-out parameter does not exist (nnabla passes None, i.e. scale 1 and shift 0). Expected
/// values are computed here by hand from the definition y = gamma (x - mean) / sqrt(var + eps) + beta.
struct BatchNormalizationOptionsTests {
    @Test(arguments: [(true, false), (false, true), (true, true)])
    func leftOutParametersAreConstantsAndNotParameters(noScale: Bool, noBias: Bool) throws {
        try Parameters.isolated {
            let bn = try Module.BatchNorm2d(nFeatures: 2, batchStat: false, noScale: noScale, noBias: noBias)
            let names = bn.getParameters(gradOnly: false).map(\.name)
            #expect(names == (noBias ? [] : ["beta"]) + (noScale ? [] : ["gamma"]) + ["mean", "var"])
            #expect(bn.getParameters().map(\.name) == (noBias ? [] : ["beta"]) + (noScale ? [] : ["gamma"]))
            try bn.mean.setData([0.5, -1] as [Float])
            try bn.var.setData([4, 0.25] as [Float])
            if !noScale { try bn.gamma.setData([3, -2] as [Float]) }
            if !noBias { try bn.beta.setData([0.25, 1] as [Float]) }
            let xs: [Float] = [1, 2, -3, 0.5, 0, 4, 2.5, -1]   // (2, 2, 2, 1): n, c, h, w
            let x = try Variable(NDArray(shape: [2, 2, 2, 1], floats: xs))
            let y = try bn(x)
            try y.forward()
            let gamma: [Double] = noScale ? [1, 1] : [3, -2], beta: [Double] = noBias ? [0, 0] : [0.25, 1]
            let mean: [Double] = [0.5, -1], variance: [Double] = [4, 0.25]
            for i in 0..<8 {
                let c = i / 2 % 2
                let want = gamma[c] * (Double(xs[i]) - mean[c]) / (variance[c] + 1e-5).squareRoot() + beta[c]
                #expect(abs(Double(y.d[i]) - want) < 1e-5, "element \(i): \(y.d[i]) against \(want)")
            }
        }
    }

    /// `PF.batchNormalization(x)` has one meaning (one output); naming `outputStat` selects the form with the
    /// batch statistics, as nnabla's `output_stat=True` returns `(y, mean, var)`.
    @Test func functionalFormsAreNotAmbiguous() throws {
        try Parameters.isolated {
            let xs: [Float] = [1, 3, -2, 6]   // (2, 2): two samples, two channels
            let x = try Variable(NDArray(shape: [2, 2], floats: xs))
            let y = try PF.batchNormalization(x, noScale: true, name: "plain")
            #expect(y.shape == [2, 2])
            #expect(Parameters.current(gradOnly: false).names == ["plain/bn/beta", "plain/bn/mean", "plain/bn/var"])
            let outs = try PF.batchNormalization(x, outputStat: true, name: "stats")
            #expect(outs.count == 3)
            try outs[1].forward()
            // Channel means by hand: (1 - 2) / 2 and (3 + 6) / 2.
            #expect(outs[1].d == [-0.5, 4.5])
            #expect(try PF.batchNormalization(x, outputStat: false, name: "one").count == 1)
        }
    }
}
