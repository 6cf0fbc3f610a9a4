import Foundation
import Testing
@testable import Kiln

/// Folding and linearising on shapes the golden file lacks, with expectations derived from the unconverted
/// test-mode network (the fold must not change what the network computes) and from the fold's formula.
struct BatchNormalizationFoldTests {
    static let tolerance: (rtol: Float, atol: Float) = (1e-4, 1e-4)

    func expectSameOutputs(_ a: [Variable], _ b: [Variable], _ what: String) throws {
        let ya = try ConverterTestNetwork.evaluate(a), yb = try ConverterTestNetwork.evaluate(b)
        for (i, (p, q)) in zip(ya, yb).enumerated() {
            let m = mismatch(q, p, rtol: Self.tolerance.rtol, atol: Self.tolerance.atol)
            #expect(m == nil, "\(what) root \(i): \(m ?? "")")
        }
    }

    /// c0 per channel of a BN built by `ConverterTestNetwork.bn`, computed here in Double.
    func c0(_ bn: FunctionNode) -> [Double] {
        let gamma = bn.inputs[2].d, variance = bn.inputs[4].d
        return zip(gamma, variance).map { Double($0) / (Double($1) + 1e-5).squareRoot() }
    }

    /// Deconvolution W is (inmaps, outmaps/group, k...): the output channel of W[i, j] is
    /// group(i) * outmaps/group + j. nnabla's old converter scaled axis 0 instead; Kiln folds correctly.
    @Test(arguments: [1, 2])
    func deconvolutionFoldScalesOutputChannelsPerGroup(group: Int) throws {
        var net = ConverterTestNetwork(seed: UInt64(10 + group))
        let x = try net.input([2, 4, 5, 5])
        let w = try net.parameter("deconv/W", [4, 6 / group, 3, 3])
        let b = try net.parameter("deconv/b", [6])
        let h = try F.deconvolution(x, w, b, pad: [1, 1], stride: [2, 2], group: group)
        let y = try net.bn(h, "bn")
        let r = try BatchNormalizationFoldedConverter().convert([y])
        #expect(r.notes.isEmpty, "\(r.notes)")
        #expect(ConverterTestNetwork.types(r.outputs) == ["Deconvolution"])
        try expectSameOutputs([y], r.outputs, "deconvolution group \(group)")

        let c = c0(try #require(y.parent))
        let folded = try #require(ConverterTestNetwork.variable("bn-folded/deconv/W", in: r.outputs)).d
        let perGroupIn = 4 / group, perGroupOut = 6 / group, k = 9
        let original = w.d
        for e in original.indices {
            let j = (e / k) % perGroupOut, i = e / (k * perGroupOut)
            let expected = c[(i / perGroupIn) * perGroupOut + j] * Double(original[e])
            #expect(abs(Double(folded[e]) - expected) <= 1e-5 * max(1, abs(expected)), "W'[\(e)]")
        }
    }

    @Test func groupedConvolutionFolds() throws {
        var net = ConverterTestNetwork(seed: 21)
        let x = try net.input([2, 6, 6, 6])
        let w = try net.parameter("conv/W", [4, 3, 3, 3])
        let y = try net.bn(try F.convolution(x, w, nil, pad: [1, 1], group: 2), "bn")
        let r = try BatchNormalizationFoldedConverter().convert([y])
        #expect(ConverterTestNetwork.types(r.outputs) == ["Convolution"])
        #expect(r.outputs[0].parent?.inputs.count == 3, "the folded layer always has a bias")
        try expectSameOutputs([y], r.outputs, "grouped convolution")
    }

    @Test func convolutionWithTwoReadersIsNotFolded() throws {
        var net = ConverterTestNetwork(seed: 31)
        let x = try net.input([2, 3, 5, 5])
        let h = try F.convolution(x, try net.parameter("conv/W", [4, 3, 3, 3]), try net.parameter("conv/b", [4]), pad: [1, 1])
        let y = try F.add2(try net.bn(h, "bn"), try F.relu(h))
        for converter in [BatchNormalizationFoldedConverter()] {
            let r = try converter.convert([y])
            #expect(ConverterTestNetwork.types(r.outputs).contains("BatchNormalization"))
            #expect(r.notes.count == 1 && r.notes[0].contains("2 readers"), "\(r.notes)")
            try expectSameOutputs([y], r.outputs, "branch")
        }
        // A layer output that is also a root is read by the caller: not folded either.
        let z = try net.bn(h, "bn2")
        let r = try BatchNormalizationFoldedConverter().convert([z, h])
        #expect(ConverterTestNetwork.types(r.outputs).contains("BatchNormalization"))
        #expect(r.notes.first?.contains("graph output") == true, "\(r.notes)")
    }

    @Test func trainingModeAndInputStatisticsAreLeftWithANote() throws {
        var net = ConverterTestNetwork(seed: 41)
        let x = try net.input([4, 3, 4, 4])
        let h = try F.convolution(x, try net.parameter("conv/W", [5, 3, 3, 3]), nil)
        let y = try net.bn(h, "bn", batchStat: true)
        for converter in [BatchNormalizationFoldedConverter() as any GraphConverter, BatchNormalizationLinearConverter()] {
            let r = try converter.convert([y])
            #expect(ConverterTestNetwork.types(r.outputs) == ["Convolution", "BatchNormalization"])
            #expect(r.notes.count == 1 && r.notes[0].contains("batch_stat=true"), "\(r.notes)")
        }
        // Statistics fed as inputs have no values before the graph runs.
        let mean = try Variable(shape: [1, 5, 1, 1], name: "fed/mean")
        let variance = try net.parameter("bn/var", [1, 5, 1, 1], 0.5...1, needGrad: false)
        let z = try F.batchNormalization(h, nil, nil, mean, variance, batchStat: false)
        let r = try BatchNormalizationFoldedConverter().convert([z])
        #expect(ConverterTestNetwork.types(r.outputs).contains("BatchNormalization"))
        #expect(r.notes.first?.contains("is an input") == true, "\(r.notes)")
    }

    @Test func blackListedLayerTypesKeepTheirBatchNormalization() throws {
        var net = ConverterTestNetwork(seed: 51)
        let x = try net.input([2, 3, 4, 4])
        let h = try net.bn(try F.convolution(x, try net.parameter("conv/W", [4, 3, 3, 3]), nil), "bn1")
        let y = try net.bn(try F.affine(try F.relu(h), try net.parameter("fc/W", [16, 5])), "bn2")
        let r = try BatchNormalizationFoldedConverter(blackList: ["Convolution"]).convert([y])
        #expect(ConverterTestNetwork.types(r.outputs) == ["Convolution", "BatchNormalization", "ReLU", "Affine"])
        #expect(r.notes.count == 1 && r.notes[0].contains("black-listed"), "\(r.notes)")
        try expectSameOutputs([y], r.outputs, "black list")
        let none = try BatchNormalizationFoldedConverter(blackList: ["BatchNormalization"]).convert([y])
        #expect(ConverterTestNetwork.types(none.outputs).filter { $0 == "BatchNormalization" }.count == 2)
        #expect(none.notes.isEmpty)
    }

    /// Random conv(+group, +-bias) -> BN -> ReLU -> affine (2-D or N-D output maps) -> BN networks, BNs
    /// with and without scale and shift: folded and linearised networks compute what the original does.
    @Test(arguments: 1...8)
    func foldedAndLinearNetworksComputeTheOriginal(seed: Int) throws {
        var net = ConverterTestNetwork(seed: UInt64(seed) * 7919)
        let group = seed % 2 == 0 ? 2 : 1
        let x = try net.input([3, 4, 5, 5])
        let w = try net.parameter("c/W", [6, 4 / group, 3, 3], -0.5...0.5)
        let h1 = try F.convolution(x, w, seed % 3 == 0 ? nil : try net.parameter("c/b", [6]), pad: [1, 1],
                                   stride: [seed % 4 == 1 ? 2 : 1, 1], group: group)
        let h2 = try F.relu(try net.bn(h1, "bn1", noScale: seed == 5, noBias: seed == 6))
        let outMaps = seed % 2 == 0 ? [4] : [3, 2]
        let inner = h2.shape.dropFirst().reduce(1, *)
        let fcW = try net.parameter("fc/W", [inner] + outMaps, -0.2...0.2)
        let fcB = seed % 3 == 1 ? nil : try net.parameter("fc/b", outMaps)
        let y = try net.bn(try F.affine(h2, fcW, fcB), "bn2", axis: 1)
        // A second, non-final branch: an affine with base_axis 2 whose BN is over its output axis 2.
        let gW = try net.parameter("g/W", [h2.shape.dropFirst(2).reduce(1, *), 3], -0.3...0.3)
        let z = try net.bn(try F.affine(h2, gW, nil, baseAxis: 2), "bn3", axis: 2)

        let folded = try BatchNormalizationFoldedConverter().convert([y, z])
        #expect(folded.notes.isEmpty, "\(folded.notes)")
        #expect(!ConverterTestNetwork.types(folded.outputs).contains("BatchNormalization"))
        try expectSameOutputs([y, z], folded.outputs, "folded seed \(seed)")

        let linear = try BatchNormalizationLinearConverter().convert([y, z])
        #expect(!ConverterTestNetwork.types(linear.outputs).contains("BatchNormalization"))
        try expectSameOutputs([y, z], linear.outputs, "linear seed \(seed)")

        // Weights and activations quantized on top of the fold still build and run.
        let q = try SequentialConverter([BatchNormalizationFoldedConverter(), FixedPointWeightConverter(argsFpq: .init(deltaW: .powerOfTwo, deltaB: .powerOfTwo)),
                                         FixedPointActivationConverter(argsFpq: .init(delta: 1.0 / 64))]).convert([y, z])
        #expect(try ConverterTestNetwork.evaluate(q.outputs).allSatisfy { $0.allSatisfy(\.isFinite) })
    }

    @Test func batchNormalizationAfterAnotherFunctionStaysWithANote() throws {
        var net = ConverterTestNetwork(seed: 61)
        let x = try net.input([2, 3, 4, 4])
        let y = try net.bn(try F.relu(x), "bn")
        let r = try BatchNormalizationFoldedConverter().convert([y])
        #expect(ConverterTestNetwork.types(r.outputs) == ["ReLU", "BatchNormalization"])
        #expect(r.notes.first?.contains("ReLU") == true, "\(r.notes)")
        let l = try BatchNormalizationLinearConverter().convert([y])
        #expect(ConverterTestNetwork.types(l.outputs) == ["ReLU", "Mul2", "Add2"])
        try expectSameOutputs([y], l.outputs, "linear after relu")
    }

    /// A fold whose weights overflow float32 leaves the BN as it is with a note, instead of building a
    /// graph with infinite parameters (which `kiln convert` then refused to write).
    @Test func foldsThatOverflowLeaveTheBatchNormalizationWithANote() throws {
        var net = ConverterTestNetwork(seed: 71)
        let x = try net.input([2, 3, 4, 4])
        let w = try net.parameter("conv/W", [4, 3, 3, 3], 0.1...0.1)
        var values = w.d
        values[0] = 3e38
        try w.setData(values)
        let h = try F.convolution(x, w, nil, pad: [1, 1])
        let gamma = try net.parameter("bn/gamma", [1, 4, 1, 1], 10...10)
        let beta = try net.parameter("bn/beta", [1, 4, 1, 1])
        let mean = try net.parameter("bn/mean", [1, 4, 1, 1], 0...0, needGrad: false)
        let variance = try net.parameter("bn/var", [1, 4, 1, 1], 1...1, needGrad: false)
        let y = try F.batchNormalization(h, beta, gamma, mean, variance, batchStat: false)
        let r = try BatchNormalizationFoldedConverter().convert([y])
        #expect(ConverterTestNetwork.types(r.outputs) == ["Convolution", "BatchNormalization"])
        #expect(r.notes.count == 1 && r.notes[0].contains("not finite"), "\(r.notes)")
    }

    /// The note for an unrepresentable BN scale names what overflowed: here gamma, not the variance.
    @Test func nonFiniteCoefficientNotesNameTheirInputs() throws {
        var net = ConverterTestNetwork(seed: 72)
        let x = try net.input([2, 3])
        let gamma = try net.parameter("bn/gamma", [1, 3], 3e38...3e38)
        let beta = try net.parameter("bn/beta", [1, 3])
        let mean = try net.parameter("bn/mean", [1, 3], 0...0, needGrad: false)
        let variance = try net.parameter("bn/var", [1, 3], 0.01...0.01, needGrad: false)
        let y = try F.batchNormalization(x, beta, gamma, mean, variance, batchStat: false)
        let r = try BatchNormalizationLinearConverter().convert([y])
        #expect(r.notes.count == 1 && r.notes[0].contains("gamma"), "\(r.notes)")
    }
}
