import Foundation
import Testing
@testable import Kiln
@testable import KilnGraph

/// Post-training quantization (`FixedPointCalibration`): the steps it picks against the ranges a naive pass over
/// the same batches sees, the graph it builds (a quantizer on every convolution and affine input and weight,
/// the quantized value read by every reader), its plan on integer kernels, and hostile arguments.
@Suite(.serialized)
struct FixedPointCalibrationTests {
    /// A LeNet-shaped network with random weights, fed random images in 0...255.
    static func network() throws -> (input: Variable, scores: Variable) {
        var rng = SplitMix64(seed: 21)
        func random(_ shape: [Int], _ scale: Float) throws -> Variable {
            let v = try Variable(shape: shape, needGrad: true)
            try v.setData((0..<shape.reduce(1, *)).map { _ in Float.random(in: -scale...scale, using: &rng) })
            return v
        }
        let x = try Variable(shape: [4, 1, 12, 12])
        var h = try F.relu(F.convolution(x, random([4, 1, 3, 3], 0.01), random([4], 0.5)))
        h = try F.maxPooling(h, kernel: [2, 2])
        let side = try F.convolution(h, random([4, 4, 1, 1], 0.5), nil)
        h = try F.relu(F.add2(F.convolution(h, random([4, 4, 3, 3], 0.3), nil, pad: [1, 1]), side))
        h = try F.tanh(F.affine(h, random([4 * 5 * 5, 8], 0.2), random([8], 0.1)))
        return (x, try F.affine(h, random([8, 3], 0.5)))
    }

    static func images(_ batch: Int, count: Int) -> [Float] {
        var rng = SplitMix64(seed: UInt64(100 + batch))
        return (0..<count).map { _ in Float.random(in: 0...255, using: &rng) }
    }

    @Test func stepsCoverTheCalibratedRanges() throws {
        try Parameters.isolated {
            let (x, scores) = try Self.network()
            let batches = 3
            // The ranges a naive pass sees: every convolution and affine input over the same batches.
            let nodes = GraphCollector.nodes(from: [scores])
            let readers = nodes.filter { $0.function is Convolution || $0.function is Affine }
            var targets: [Variable] = []
            for n in readers where !targets.contains(where: { $0 === n.inputs[0] }) { targets.append(n.inputs[0]) }
            #expect(targets.count == 4)
            // And the residual: of the Add2 of two convolution outputs, the one made later (the 3x3 convolution's).
            let add = try #require(nodes.first { $0.function is Add2 })
            let later = try #require(add.inputs.max { a, b in
                (nodes.firstIndex { $0 === a.parent } ?? 0) < (nodes.firstIndex { $0 === b.parent } ?? 0)
            })
            #expect((later.parent?.function as? Convolution)?.pad == [1, 1])
            targets.append(later)
            var low = [Float](repeating: .infinity, count: targets.count), high = [Float](repeating: -.infinity, count: targets.count)
            for b in 0..<batches {
                try x.setData(Self.images(b, count: x.size))
                try scores.forward()
                for (i, t) in targets.enumerated() { for v in t.d { low[i] = min(low[i], v); high[i] = max(high[i], v) } }
            }
            let calibration = try FixedPointCalibration(bits: 8)
            let r = try calibration.quantize([scores], batches: batches, feed: { b in try x.setData(Self.images(b, count: x.size)) })
            try #require(r.ranges.count == targets.count)
            for (i, range) in r.ranges.enumerated() {
                #expect(range.min == low[i] && range.max == high[i], "\(range.name) \(range.min) \(range.max) \(low[i]) \(high[i])")
                #expect(range.signed == (low[i] < 0))
                // The smallest power of two whose largest code reaches the largest magnitude.
                let top = Double(range.signed ? 127 : 255), magnitude = Double(max(abs(low[i]), abs(high[i])))
                let step = try #require(range.step)
                #expect(step * top >= magnitude && step / 2 * top < magnitude, "\(range.name): step \(step) for \(magnitude)")
                #expect(step == pow(2, (log2(step)).rounded()))
            }
            // Inputs of a ReLU-then-pooling layer are unsigned; the affine after tanh reads signed values.
            #expect(r.ranges[0].signed == false && r.ranges[1].signed == false && r.ranges[3].signed == true)
            #expect(r.ranges[4].layer.hasSuffix("(residual)"))
            #expect(r.notes.isEmpty, "\(r.notes)")

            // Every quantized layer runs on integer kernels, and the plan holds codes.
            let plan = try Compiler.plan(r.outputs, .inference)
            #expect(plan.steps.filter { $0.function.hasPrefix("Quantized") }.count == readers.count, "\(plan.steps.map(\.function))")
            #expect(plan.notes.isEmpty, "\(plan.notes)")
            #expect(plan.buffers.contains { $0.codes != nil })
            // The quantizer of the pooled value moved before the pooling (and the ReLU before it, which an unsigned
            // quantizer makes a no-op, is gone): the plan pools codes.
            #expect(plan.steps.contains { $0.function == "MaxPooling" && plan.buffers[$0.inputs[0]].codes != nil })
            #expect(!plan.steps.contains { $0.function == "ReLU" })

            // The quantized network computes what its float fake-quantization plan computes, and stays close to
            // the float network (8-bit steps on every layer).
            try x.setData(Self.images(7, count: x.size))
            try scores.forward(clearBuffer: true)
            let float = scores.d
            let exe = try Compiler.compile(r.outputs, .inference)
            try exe.run()
            let quantized = r.outputs[0].d
            var options = CompileOptions()
            options.integerKernels = false
            let fake = try Compiler.compile(r.outputs, .inference, options: options)
            try fake.run()
            #expect(r.outputs[0].d == quantized)
            let scale = float.map { abs($0) }.max() ?? 1
            let worst = zip(float, quantized).map { abs($0 - $1) }.max() ?? 0
            #expect(worst < 0.1 * scale, "worst difference \(worst) of scores up to \(scale)")
        }
    }

    /// ResNet-20 calibrated on random images: every layer on integer kernels, each projection shortcut's output
    /// quantized and added in the main path's epilogue, block outputs written over their residual's codes in
    /// place; and the integer plan computes exactly what the fake-quantization plan computes.
    @Test func resnetRunsOnIntegersWithResidualsInPlace() throws {
        try Parameters.isolated {
            let model = try Zoo.resnet20.build(batchSize: 2, training: false)
            var rng = SplitMix64(seed: 31)
            for (name, v) in model.network.getParameters(gradOnly: false) where name.hasSuffix("var") || name.hasSuffix("mean") {
                try v.setData((0..<v.size).map { _ in name.hasSuffix("var") ? Float.random(in: 0.5...2, using: &rng)
                                                                         : Float.random(in: -0.5...0.5, using: &rng) })
            }
            let feed = { (b: Int) in try model.input.setData(Self.images(b, count: model.input.size)) }
            let r = try FixedPointCalibration().quantize([model.prediction], batches: 2, feed: feed)
            #expect(r.ranges.filter { $0.layer.hasSuffix("(residual)") }.count == 2)
            try feed(5)
            let exe = try Compiler.compile(r.outputs, .inference)
            try exe.plan.verify()
            let plan = exe.plan
            #expect(plan.steps.filter { $0.function.hasPrefix("Quantized") }.count == 22, "\(plan.steps.map(\.function))")
            #expect(plan.steps.filter { $0.function.hasSuffix("+Add2+FixedPointQuantize") }.count == 8)
            #expect(plan.aliases.keys.contains { plan.buffers[$0].codes != nil }, "a block output in place of its residual")
            try exe.run()
            let integer = r.outputs[0].d
            var options = CompileOptions()
            options.integerKernels = false
            try Compiler.compile(r.outputs, .inference, options: options).run()
            #expect(r.outputs[0].d == integer)
        }
    }

    @Test func hostileArguments() throws {
        for bits in [0, 1, 9, 33, -4] {
            #expect(throws: KilnError.self, "bits \(bits)") { try FixedPointCalibration(bits: bits) }
        }
        try Parameters.isolated {
            let (x, scores) = try Self.network()
            let c = try FixedPointCalibration()
            #expect(throws: KilnError.self) { try c.quantize([scores], batches: 0, feed: { _ in }) }
            // A NaN in the data has no step: an error naming the tensor, not a quantizer of step NaN.
            let nan = try #require(throws: KilnError.self) {
                try c.quantize([scores], batches: 1, feed: { _ in
                    var data = Self.images(0, count: x.size)
                    data[5] = .nan
                    try x.setData(data)
                })
            }
            #expect("\(nan)".contains("holds nan"))
            // A graph without convolutions or affines has nothing to quantize.
            let y = try F.tanh(x)
            #expect(throws: KilnError.self) { try c.quantize([y], batches: 1, feed: { _ in }) }
        }
    }
}
