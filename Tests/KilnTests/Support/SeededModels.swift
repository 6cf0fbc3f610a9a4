@testable import Kiln

extension Zoo {
    /// A ResNet-20 training graph with fixed weights (NumpyRandom seed 5), random images (SplitMix64 seed 6) and
    /// labels 0, 1, ..., 9, 0, ...: the same numbers in every test that compares two ways of running one step.
    /// Call inside `Parameters.isolated`.
    static func seededResNet20(batchSize: Int) throws -> Model {
        let model = try Zoo.resnet20.build(batchSize: batchSize, training: true,
                                           network: Zoo.resnet20.network(rng: NumpyRandom(seed: 5)))
        var rng = SplitMix64(seed: 6)
        try model.input.setData((0..<model.input.size).map { _ in Float.random(in: 0...255, using: &rng) })
        try model.label.setData((0..<batchSize).map { Float($0 % 10) })
        return model
    }
}
