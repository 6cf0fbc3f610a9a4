/// nnabla's aliases of the parametric function classes, at the top level so that they can be written
/// anywhere without `Module.`: `Linear(nInMaps: 784, nOutMaps: 10)`, `Conv2d(...)`, `BatchNorm2d(...)`.
///
/// The classes themselves are `Module.Affine`, `Module.Convolution`, `Module.Deconvolution`,
/// `Module.BatchNormalization` and `Module.Embed`, because the top-level `Affine`, `Convolution`, ... are Kiln's
/// function types (what `F.affine` applies and graph files name). Inside a `Module` subclass those names
/// find the classes unqualified; elsewhere these aliases, which name no function, do.
public typealias Linear = Module.Affine
public typealias Conv1d = Module.Convolution
public typealias Conv2d = Module.Convolution
public typealias Conv3d = Module.Convolution
public typealias ConvNd = Module.Convolution
public typealias Deconv1d = Module.Deconvolution
public typealias Deconv2d = Module.Deconvolution
public typealias Deconv3d = Module.Deconvolution
public typealias DeconvNd = Module.Deconvolution
public typealias BatchNorm1d = Module.BatchNorm1d
public typealias BatchNorm2d = Module.BatchNorm2d
public typealias BatchNorm3d = Module.BatchNorm3d
