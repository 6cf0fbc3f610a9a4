import Testing
@testable import Kiln

/// For every function (each nnabla golden case, followed by a second function so that buffers get
/// reused), backward through a plan with clear_buffer on and off gives identical results: nnabla had bugs
/// exactly there.
struct ClearBufferGoldenTests {
    static func results(_ c: Golden.FunctionCase, clearBuffer: Bool) throws -> [[Float]] {
        let inputs = try c.inputs.enumerated().map { i, t -> Variable in
            let v = try Variable(t.array(), needGrad: c.differentiable[i], name: "in\(i)")
            return v
        }
        let outs = try apply(Golden.function(c), inputs)
        // Feed every float output through a second function and sum it, so the plan has a real backward chain.
        var terms: [Variable] = []
        for o in outs where o.dtype == .float32 { terms.append(try F.sum(F.tanh(o))) }
        guard !terms.isEmpty else { return [] }
        var loss = terms[0]
        for t in terms.dropFirst() { loss = try F.add2(loss, t) }
        let mode: PlanMode = c.outputGrads == nil ? .inference : .training
        let exe = try Compiler.compile([loss] + outs, mode, options: CompileOptions(clearBuffer: clearBuffer))
        try exe.plan.verify()
        try exe.run()
        return [loss.d] + outs.map { $0.d } + inputs.filter { $0.needGrad }.map { $0.g }
    }

    @Test(arguments: GoldenFunctionTests.allCases)
    func clearBufferOnAndOffAgree(_ c: Golden.FunctionCase) throws {
        let on = try Self.results(c, clearBuffer: true)
        let off = try Self.results(c, clearBuffer: false)
        #expect(on == off, "\(c.name)")
    }
}
