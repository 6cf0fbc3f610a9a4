import Foundation
import SwiftProtobuf
import Testing
@testable import Kiln
@testable import KilnInterop

/// ONNX QDQ models written by hand: a QuantizeLinear/DequantizeLinear pair on the input, a convolution whose
/// weight is the DequantizeLinear of int8 codes with one scale per map, a pair on its output. The imported plan
/// runs the convolution on integer kernels and agrees, within one output step, with a plain reference of ONNX's
/// definition (codes by round half to even, integer sums, one rescaling); bad quantizer arguments are errors
/// naming the node.
struct ONNXQDQImportTests {
    static func tensor(_ name: String, _ dims: [Int], floats: [Float]) -> Onnx_TensorProto {
        var t = Onnx_TensorProto()
        t.name = name
        t.dims = dims.map { Int64($0) }
        t.dataType = 1
        t.floatData = floats
        return t
    }

    /// An 8-bit tensor (ONNX type 2 uint8, 3 int8), its bytes as raw data.
    static func tensor(_ name: String, _ dims: [Int], bytes: [Int], signed: Bool) -> Onnx_TensorProto {
        var t = Onnx_TensorProto()
        t.name = name
        t.dims = dims.map { Int64($0) }
        t.dataType = signed ? 3 : 2
        t.rawData = Data(bytes.map { UInt8(truncatingIfNeeded: $0) })
        return t
    }

    static func node(_ op: String, _ inputs: [String], _ outputs: [String], _ attributes: [Onnx_AttributeProto] = []) -> Onnx_NodeProto {
        var n = Onnx_NodeProto()
        n.opType = op
        n.name = outputs[0] + "_node"
        n.input = inputs
        n.output = outputs
        n.attribute = attributes
        return n
    }

    struct Spec {
        var xScale: Float = 0.0137, xZero = 37
        var yScale: Float = 0.029, yZero = 3
        var zeroPointSigned = false
        var blockSize = false
    }

    static let maps = 4, channels = 3, side = 6

    static func weights() -> (codes: [Int], scales: [Float], bias: [Float]) {
        var rng = SplitMix64(seed: 31)
        let codes = (0..<(maps * channels * 9)).map { _ in Int(rng.next() % 255) - 127 }
        return (codes, [0.0031, 0.0047, 0.0023, 0.0039], [0.25, -0.5, 0.125, 0])
    }

    static func model(_ s: Spec) throws -> ONNXModel {
        let (codes, scales, bias) = weights()
        var input = Onnx_ValueInfoProto()
        input.name = "x"
        input.type.tensorType.elemType = 1
        input.type.tensorType.shape.dim = [2, channels, side, side].map { d -> Onnx_TensorShapeProto.Dimension in
            var dim = Onnx_TensorShapeProto.Dimension()
            dim.dimValue = Int64(d)
            return dim
        }
        var output = Onnx_ValueInfoProto()
        output.name = "y"
        var g = Onnx_GraphProto()
        g.name = "qdq"
        g.input = [input]
        g.output = [output]
        g.initializer = [
            tensor("x_scale", [], floats: [s.xScale]),
            tensor("x_zero", [], bytes: [s.xZero], signed: s.zeroPointSigned),
            tensor("w_q", [maps, channels, 3, 3], bytes: codes, signed: true),
            tensor("w_scale", [maps], floats: scales),
            tensor("w_zero", [maps], bytes: [Int](repeating: 0, count: maps), signed: true),
            tensor("b", [maps], floats: bias),
            tensor("y_scale", [], floats: [s.yScale]),
            tensor("y_zero", [], bytes: [s.yZero], signed: false),
        ]
        var pads = Onnx_AttributeProto()
        pads.name = "pads"
        pads.type = .ints
        pads.ints = [1, 1, 1, 1]
        var axis = Onnx_AttributeProto()
        axis.name = "axis"
        axis.type = .int
        axis.i = 0
        var block = Onnx_AttributeProto()
        block.name = "block_size"
        block.type = .int
        block.i = 2
        g.node = [
            node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["xq"], s.blockSize ? [block] : []),
            node("DequantizeLinear", ["xq", "x_scale", "x_zero"], ["xd"]),
            node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"], [axis]),
            node("Conv", ["xd", "w", "b"], ["c"], [pads]),
            node("QuantizeLinear", ["c", "y_scale", "y_zero"], ["yq"]),
            node("DequantizeLinear", ["yq", "y_scale", "y_zero"], ["y"]),
        ]
        var m = Onnx_ModelProto()
        var opset = Onnx_OperatorSetIdProto()
        opset.version = 21
        m.opsetImport = [opset]
        m.graph = g
        return try ONNXModel(bytes: try m.serializedBytes())
    }

    /// ONNX's definition, written plainly: codes of x, integer sums with the weight codes, one rescaling per map,
    /// the bias, codes of the result.
    static func reference(_ x: [Float], _ s: Spec) -> [Float] {
        let (codes, scales, bias) = weights()
        func quantize(_ v: Float, _ scale: Float, _ zero: Int) -> Int {
            min(max(Int((v / scale).rounded(.toNearestOrEven)) + zero, 0), 255)
        }
        let xq = x.map { quantize($0, s.xScale, s.xZero) }
        var out: [Float] = []
        for n in 0..<2 { for m in 0..<maps { for oy in 0..<side { for ox in 0..<side {
            var sum = 0
            for c in 0..<channels { for i in 0..<3 { for j in 0..<3 {
                let y = oy + i - 1, xx = ox + j - 1
                guard y >= 0, y < side, xx >= 0, xx < side else { continue }
                sum += (xq[((n * channels + c) * side + y) * side + xx] - s.xZero) * codes[((m * channels + c) * 3 + i) * 3 + j]
            } } }
            let v = Float(sum) * (s.xScale * scales[m]) + bias[m]
            out.append(Float(quantize(v, s.yScale, s.yZero) - s.yZero) * s.yScale)
        } } } }
        return out
    }

    @Test func convolutionBetweenPairsRunsOnIntegers() throws {
        let s = Spec()
        let imported = try ONNXImporter.importGraph(try Self.model(s))
        var rng = SplitMix64(seed: 2)
        let x = (0..<(2 * Self.channels * Self.side * Self.side)).map { _ in Float.random(in: -0.3...3.2, using: &rng) }
        try #require(imported.graph.variables["x"]).setData(x)
        let exe = try Compiler.compile(imported.graph.outputs, .inference, options: CompileOptions())
        try exe.plan.verify()
        try exe.run()
        #expect(exe.plan.steps.contains { $0.function == "QuantizedConvolution+QuantizeLinear+DequantizeLinear" },
                "\(exe.plan.steps.map(\.function))")
        let got = imported.graph.outputs[0].d, want = Self.reference(x, s)
        let worst = zip(got, want).map { abs($0 - $1) }.max() ?? .infinity
        #expect(got.count == want.count)
        #expect(worst <= s.yScale * 1.0001, "largest difference \(worst), step \(s.yScale)")
        #expect(zip(got, want).filter { $0 == $1 }.count * 100 >= want.count * 98)
    }

    @Test func badQuantizersAreErrorsNamingTheNode() throws {
        func refused(_ s: Spec, _ words: String) throws {
            #expect {
                _ = try ONNXImporter.importGraph(try Self.model(s))
            } throws: { "\($0)".contains("xq_node") && "\($0)".contains(words) }
        }
        try refused(Spec(xScale: 0), "positive and finite")
        try refused(Spec(xScale: -0.5), "positive and finite")
        try refused(Spec(xScale: .nan), "positive and finite")
        try refused(Spec(xScale: .infinity), "positive and finite")
        try refused(Spec(blockSize: true), "block_size")
    }
}
