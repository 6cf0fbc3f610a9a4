// Heavy kernels on the zoo's real layer shapes, each as a single-function graph run through its compiled
// plan: inference plans for forward, training plans for backward (only the backward phase is timed, with the
// output gradient set once and `seed: nil`, so no seed fill is counted). Plus one sgemm per convolution
// product with the whole layer's M, N, K, so a convolution's MFLOP/s can be read against that sgemm's.
import Benchmark
import BenchSupport
import Kiln

let benchmarks: @Sendable () -> Void = {
    KilnBench.configure()

    // MARK: Convolution forward / backward-data / backward-weights

    for l in ConvLayer.zoo {
        let label = "\(l.name) \(l.shapeLabel)"
        func graph(xGrad: Bool, wGrad: Bool) throws -> (x: Variable, w: Variable, b: Variable?, y: Variable) {
            let x = try KilnBench.variable([l.batch, l.channels, l.height, l.width], needGrad: xGrad)
            let w = try KilnBench.variable([l.outMaps, l.channels, l.kernel, l.kernel], needGrad: wGrad)
            let b = l.bias ? try KilnBench.variable([l.outMaps], needGrad: wGrad) : nil
            let y = try F.convolution(x, w, b, pad: [l.pad, l.pad], stride: [l.stride, l.stride])
            return (x, w, b, y)
        }
        KilnBench.register("conv forward \(label)", flops: l.flops) {
            let g = try graph(xGrad: false, wGrad: false)
            let exe = try Compiler.compile(g.y, .inference)
            return { try exe.run() }
        }
        KilnBench.register("conv backward-data \(label)", flops: l.flops) {
            let g = try graph(xGrad: true, wGrad: false)
            let exe = try Compiler.compile(g.y, .training)
            try exe.run(.forward)
            KilnBench.fillUniform(g.y.grad)
            return { try exe.run(.backward, seed: nil) }
        }
        KilnBench.register("conv backward-weights \(label)", flops: l.flops) {
            let g = try graph(xGrad: false, wGrad: true)
            let exe = try Compiler.compile(g.y, .training)
            try exe.run(.forward)
            KilnBench.fillUniform(g.y.grad)
            return { try exe.run(.backward, seed: nil) }
        }
    }

    // MARK: sgemm on each convolution's products, one call over the whole batch

    // The reference a convolution is judged by: one sgemm with the same M, N, K as the whole layer's product
    // (N or K spans every position of every sample), for the forward and both backward products. All are
    // above Gemm's small-product limit, so each is a single cblas_sgemm call.
    for l in ConvLayer.zoo {
        let (m, n, k) = (l.m, l.n * l.batch, l.k)
        func buffers(_ sizes: [Int]) -> [UnsafeMutablePointer<Float>] {
            sizes.map { size in
                let p = UnsafeMutablePointer<Float>.allocate(capacity: size)
                for i in 0..<size { p[i] = Float(i % 7) * 0.1 - 0.3 }
                return p
            }
        }
        // Forward: Y[M, N] = W[M, K] * cols[K, N].
        KilnBench.register("sgemm forward \(l.name) M\(m) N\(n) K\(k)", flops: l.flops) {
            let p = buffers([m * k, k * n, m * n])
            return { Gemm.sgemm(m: m, n: n, k: k, a: p[0], b: p[1], c: p[2]) }
        }
        // Backward-data: cols[K, N] = W^T[K, M] * dY[M, N].
        KilnBench.register("sgemm backward-data \(l.name) M\(k) N\(n) K\(m)", flops: l.flops) {
            let p = buffers([m * k, m * n, k * n])
            return { Gemm.sgemm(transA: true, m: k, n: n, k: m, a: p[0], b: p[1], c: p[2]) }
        }
        // Backward-weights: dW[M, K] = dY[M, N] * cols^T[N, K].
        KilnBench.register("sgemm backward-weights \(l.name) M\(m) N\(k) K\(n)", flops: l.flops) {
            let p = buffers([m * n, k * n, m * k])
            return { Gemm.sgemm(transB: true, m: m, n: k, k: n, a: p[0], b: p[1], c: p[2]) }
        }
    }

    // MARK: Affine (LeNet's fc3/fc4 at batch 64, ResNet-20's fc at batch 32)

    for (name, batch, inputs, outputs) in [("lenet/fc3", 64, 256, 50), ("lenet/fc4", 64, 50, 10), ("resnet20/fc", 32, 64, 10)] {
        let label = "\(name) \(batch)x\(inputs) -> \(outputs)"
        let flops = 2 * Double(batch * inputs * outputs)
        func graph(_ grad: Bool) throws -> Variable {
            let x = try KilnBench.variable([batch, inputs], needGrad: grad)
            let w = try KilnBench.variable([inputs, outputs], needGrad: grad)
            let b = try KilnBench.variable([outputs], needGrad: grad)
            return try F.affine(x, w, b)
        }
        KilnBench.register("affine forward \(label)", flops: flops) {
            let exe = try Compiler.compile(graph(false), .inference)
            return { try exe.run() }
        }
        KilnBench.register("affine backward (dx, dW, db) \(label)", flops: 2 * flops) {
            let y = try graph(true)
            let exe = try Compiler.compile(y, .training)
            try exe.run(.forward)
            KilnBench.fillUniform(y.grad)
            return { try exe.run(.backward, seed: nil) }
        }
    }

    // MARK: Batch normalization (ResNet-20's three stages at batch 32, batch statistics as in training)

    for (name, shape) in [("stage1", [32, 16, 32, 32]), ("stage2", [32, 32, 16, 16]), ("stage3", [32, 64, 8, 8])] {
        let label = "resnet20/\(name) \(shape.map(String.init).joined(separator: "x"))"
        func graph(training: Bool) throws -> Variable {
            let c = shape[1]
            let x = try KilnBench.variable(shape, needGrad: training)
            let beta = try KilnBench.variable([1, c, 1, 1], needGrad: training)
            let gamma = try KilnBench.variable([1, c, 1, 1], needGrad: training)
            let mean = try Variable(shape: [1, c, 1, 1])
            let variance = try Variable(shape: [1, c, 1, 1])
            variance.data.fill(1)
            return try F.batchNormalization(x, beta, gamma, mean, variance, batchStat: training)
        }
        KilnBench.register("bn forward (batch stats) \(label)") {
            let y = try graph(training: true)
            let exe = try Compiler.compile(y, .training)
            return { try exe.run(.forward) }
        }
        KilnBench.register("bn forward (inference) \(label)") {
            let exe = try Compiler.compile(graph(training: false), .inference)
            return { try exe.run() }
        }
        KilnBench.register("bn backward \(label)") {
            let y = try graph(training: true)
            let exe = try Compiler.compile(y, .training)
            try exe.run(.forward)
            KilnBench.fillUniform(y.grad)
            return { try exe.run(.backward, seed: nil) }
        }
    }

    // MARK: Pooling and ReLU

    let pools: [(String, [Int], Bool)] = [
        ("max k2 lenet/pool1", [64, 16, 24, 24], false), ("max k2 lenet/pool2", [64, 16, 8, 8], false),
        ("global-average resnet20/pool", [32, 64, 8, 8], true),
    ]
    for (name, shape, global) in pools {
        let label = "\(name) \(shape.map(String.init).joined(separator: "x"))"
        func graph(_ grad: Bool) throws -> Variable {
            let x = try KilnBench.variable(shape, needGrad: grad)
            return global ? try F.globalAveragePooling(x) : try F.maxPooling(x, kernel: [2, 2])
        }
        KilnBench.register("pooling forward \(label)") {
            let exe = try Compiler.compile(graph(false), .inference)
            return { try exe.run() }
        }
        KilnBench.register("pooling backward \(label)") {
            let y = try graph(true)
            let exe = try Compiler.compile(y, .training)
            try exe.run(.forward)
            KilnBench.fillUniform(y.grad)
            return { try exe.run(.backward, seed: nil) }
        }
    }
    let reluShape = [32, 16, 32, 32]
    KilnBench.register("relu forward resnet20/stage1 32x16x32x32") {
        let exe = try Compiler.compile(F.relu(KilnBench.variable(reluShape)), .inference)
        return { try exe.run() }
    }
    KilnBench.register("relu backward resnet20/stage1 32x16x32x32") {
        let y = try F.relu(KilnBench.variable(reluShape, needGrad: true))
        let exe = try Compiler.compile(y, .training)
        try exe.run(.forward)
        KilnBench.fillUniform(y.grad)
        return { try exe.run(.backward, seed: nil) }
    }
}
