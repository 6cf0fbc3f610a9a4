import Testing
@testable import Kiln

/// The converters' nnabla interface (`params`, `entry_variables`, `call_forward`, `args_fpq`, `name`) and
/// the parameters they register, written from nnabla's converter sources (commit 298376b4^): every
/// parameter a conversion reads is re-created with `get_parameter_or_create` inside
/// `parameter_scope(name)`, so the registry gains `<name>/<old name>` copies, and the fixed-point weight
/// converter calls `PF.fixed_point_quantized_*`, whose parameters live in its `fp_quantized_*` scope.
@Suite struct ConverterInterfaceTests {
    /// conv1 (3x3, bias) -> BN (test mode) -> ReLU -> fc (affine), built with PF in the registry.
    struct Net {
        let x: Variable
        let h: Variable
        let y: Variable
    }

    static func net() throws -> Net {
        let x = try Variable(shape: [2, 3, 5, 5], name: "x")
        x.d = (0..<x.size).map { Float(($0 * 37) % 23) / 11 - 1 }
        let c = try Parameters.scope("conv1") { try PF.convolution(x, outMaps: 4, kernel: [3, 3], pad: [1, 1]) }
        let b: Variable = try Parameters.scope("bn1") { try PF.batchNormalization(c, batchStat: false) }
        // Statistics that make the BN do something.
        for (suffix, base) in [("mean", 0.1), ("var", 0.5), ("gamma", 1.5), ("beta", -0.2)] {
            let p = try #require(Parameters.current(gradOnly: false).first { $0.name.hasPrefix("bn1/") && $0.name.hasSuffix("/\(suffix)") }?.variable)
            p.d = (0..<p.size).map { Float(base) + Float($0) * 0.05 }
        }
        let h = try F.relu(b)
        let y = try Parameters.scope("fc") { try PF.affine(h, outMaps: 3) }
        return Net(x: x, h: h, y: y)
    }

    static func names(withPrefix prefix: String) -> [String] {
        Parameters.current(gradOnly: false).names.filter { $0.hasPrefix(prefix) }
    }

    /// nnabla's fixed_point_quantize, written out: clip to +-(2^(n-1)-1)*delta, round half away from zero.
    static func quantize(_ v: [Float], n: Int, delta: Double) -> [Float] {
        let max = Double((1 << (n - 1)) - 1) * delta
        return v.map { x in
            let d = Double(x)
            if d > max { return Float(max) }
            if d < -max { return Float(-max) }
            return Float((d < 0 ? -1 : 1) * (abs(d) / delta + 0.5).rounded(.down) * delta)
        }
    }

    @Test func identityCopiesEveryParameterIntoItsScope() throws {
        try Parameters.isolated {
            let n = try Self.net()
            let before = Parameters.current(gradOnly: false)
            let y2 = try IdentityConverter().convert(n.y, entryVariables: [n.x])
            let copies = Self.names(withPrefix: "identity/")
            #expect(copies == before.names.map { "identity/\($0)" })
            for (name, old) in before {
                let copy = try #require(Parameters.get("identity/\(name)"))
                #expect(copy !== old && copy.d == old.d && copy.needGrad == old.needGrad)
            }
            try n.y.forward()
            try y2.forward()
            #expect(y2.d == n.y.d)
            // The copies belong to the new graph alone: changing one leaves the old graph as it was.
            let w = try #require(Parameters.get("identity/fc/affine/W"))
            w.d = [Float](repeating: 0, count: w.size)
            try n.y.forward()
            try y2.forward()
            #expect(y2.d != n.y.d)
            // nnabla's `name` is the scope.
            _ = try IdentityConverter(name: "copy").convert(n.y, entryVariables: [n.x])
            #expect(Self.names(withPrefix: "copy/").count == before.count)
        }
    }

    @Test func paramsChoosesWhatIsCopiedAndTheRestIsShared() throws {
        try Parameters.isolated {
            let n = try Self.net()
            let all = Parameters.current(gradOnly: false)
            let fcOnly = ParameterDictionary(all.filter { $0.name.hasPrefix("fc/") })
            let y2 = try IdentityConverter(params: fcOnly).convert(n.y, entryVariables: [n.x])
            #expect(Self.names(withPrefix: "identity/") == fcOnly.names.map { "identity/\($0)" })
            let reads = Set(GraphCollector.nodes(from: [y2]).flatMap { $0.inputs }.map { ObjectIdentifier($0) })
            let convW = try #require(all.first { $0.name.hasPrefix("conv1/") && $0.name.hasSuffix("/W") }?.variable)
            #expect(reads.contains(ObjectIdentifier(convW)), "a parameter outside params is shared")
            #expect(!reads.contains(ObjectIdentifier(try #require(all["fc/affine/W"]))), "a parameter in params is copied")
        }
    }

    @Test func entryVariablesAreWhereTheConversionStarts() throws {
        try Parameters.isolated {
            let n = try Self.net()
            let y2 = try IdentityConverter().convert(n.y, entryVariables: [n.h])
            // The new graph reads h itself (with h's own history, as in nnabla); nothing behind h was converted.
            let nodes = GraphCollector.nodes(from: [y2], stoppingAt: [.init(n.h)])
            #expect(nodes.map(\.typeName) == ["Affine"], "nothing behind the entry variable is converted")
            #expect(nodes.first?.inputs.first === n.h)
            #expect(Self.names(withPrefix: "identity/") == ["identity/fc/affine/W", "identity/fc/affine/b"])
        }
    }

    @Test func foldedAndLinearParametersHaveNnablasNames() throws {
        try Parameters.isolated {
            let n = try Self.net()
            let convW = try #require(Parameters.current().first { $0.name.hasPrefix("conv1/") && $0.name.hasSuffix("/W") })
            let scope = convW.name.dropLast(2)
            let y2 = try BatchNormalizationFoldedConverter().convert(n.y, entryVariables: [n.x])
            // The folded W keeps its name, b sits beside it; BN's parameters are gone; fc is copied.
            #expect(Self.names(withPrefix: "bn-folded/") == ["bn-folded/\(convW.name)", "bn-folded/\(scope)/b",
                                                            "bn-folded/fc/affine/W", "bn-folded/fc/affine/b"])
            try n.y.forward()
            try y2.forward()
            #expect(mismatch(y2.d, n.y.d, rtol: 1e-5, atol: 1e-6) == nil, "folded")

            let y3 = try BatchNormalizationLinearConverter().convert(n.y, entryVariables: [n.x])
            let linear = Self.names(withPrefix: "bn-linear/")
            #expect(linear.contains("bn-linear/c0-bn-linear-0") && linear.contains("bn-linear/c1-bn-linear-0"))
            #expect(!linear.contains { $0.contains("-1") }, "one BN, one pair of coefficients")
            try y3.forward()
            #expect(mismatch(y3.d, n.y.d, rtol: 1e-5, atol: 1e-6) == nil, "linear")
        }
    }

    @Test func fixedPointWeightsRegisterNnablasParametricFunctionParameters() throws {
        try Parameters.isolated {
            let n = try Self.net()
            let y2 = try FixedPointWeightConverter(argsFpq: .init(deltaW: 0.015625, deltaB: 0.0078125))
                .convert(n.y, entryVariables: [n.x])
            let fc = "fixed-point-weight-graph/fc/affine/fp_quantized_affine"
            let registered = Self.names(withPrefix: "fixed-point-weight-graph/")
            for p in ["W", "b", "W_q", "b_q"] { #expect(registered.contains("\(fc)/\(p)"), "\(fc)/\(p) in \(registered)") }
            #expect(registered.contains { $0.hasSuffix("/fp_quantized_conv/W_q") })
            // W_q is no gradient parameter; with call_forward (the default) it already holds the quantized W.
            #expect(!Parameters.current().names.contains("\(fc)/W_q"))
            let w = try #require(Parameters.get("fc/affine/W")), wq = try #require(Parameters.get("\(fc)/W_q"))
            #expect(wq.d == Self.quantize(w.d, n: 8, delta: 1.0 / 64))
            let bq = try #require(Parameters.get("\(fc)/b_q")), b = try #require(Parameters.get("fc/affine/b"))
            #expect(bq.d == Self.quantize(b.d, n: 8, delta: 1.0 / 128))
            // The float copy is what the quantizer reads.
            #expect(wq.parent?.inputs.first === Parameters.get("\(fc)/W"))
            try y2.forward()
            let out = y2.d
            #expect(!out.isEmpty && out.allSatisfy { $0.isFinite })
        }
    }

    @Test func argsFpqDefaultsAreNnablas() {
        let w = FixedPointWeightConverter.Arguments()
        #expect(w.signW && w.nW == 8 && w.deltaW == .fixed(2e-4) && w.quantizeW)
        #expect(w.signB && w.nB == 8 && w.deltaB == .fixed(2e-4) && w.quantizeB)
        let a = FixedPointActivationConverter.Arguments()
        #expect(!a.sign && a.n == 8 && a.delta == 2e-4 && a.quantize)
        let c = FixedPointWeightConverter(params: [:])
        #expect(c.callForward && !c.floor && c.name == "fixed-point-weight-graph" && c.innerProdFunctions == ["Affine", "Convolution", "Deconvolution"])
        #expect(FixedPointActivationConverter(params: [:]).activationFunctions == ["ReLU"])
    }

    @Test func sequentialPassesTheEntryVariablesOn() throws {
        try Parameters.isolated {
            let n = try Self.net()
            let y2 = try SequentialConverter([FixedPointWeightConverter(), FixedPointActivationConverter()])
                .convert(n.y, entryVariables: [n.h])
            let nodes = GraphCollector.nodes(from: [y2], stoppingAt: [.init(n.h)])
            #expect(nodes.map(\.typeName).sorted() == ["Affine", "FixedPointQuantize", "FixedPointQuantize"])
        }
    }

    @Test func parameterDictionaryIsAnOrderedDict() throws {
        let a = try Variable(shape: [1]), b = try Variable(shape: [2]), c = try Variable(shape: [3])
        var d: ParameterDictionary = ["w": a, "b": b]
        d["w"] = c
        #expect(d.names == ["w", "b"] && d["w"] === c, "replacing keeps the place")
        d["x"] = a
        d["b"] = nil
        #expect(d.names == ["w", "x"] && d["x"] === a && d.name(of: a) == "x")
        #expect(ParameterDictionary(["z": a, "m": b]).names == ["m", "z"], "a Swift dictionary is taken sorted")
        let list: ParameterDictionary = [("p", a), ("q", b)]
        #expect(list.map(\.name) == ["p", "q"])
        let solver = Sgd(lr: 0.1)
        solver.setParameters(["w": a])
        #expect(solver.parameters.names == ["w"])
    }
}
