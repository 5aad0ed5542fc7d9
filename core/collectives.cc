#include "core/collectives.h"

#include <cstdint>

#include <torch/autograd.h>

namespace tb {
namespace {

// The Collectives pointer travels through the autograd context as an
// integer (saved_data holds IValues); the object outlives the graph (it
// lives as long as the training run).
int64_t Handle(Collectives* c) { return static_cast<int64_t>(reinterpret_cast<intptr_t>(c)); }
Collectives* FromHandle(const c10::IValue& v) {
  return reinterpret_cast<Collectives*>(static_cast<intptr_t>(v.toInt()));
}

class AllReduceSumFunction : public torch::autograd::Function<AllReduceSumFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               int64_t handle) {
    ctx->saved_data["collectives"] = handle;
    torch::Tensor out = x.contiguous().clone();
    FromHandle(handle)->AllReduceSum({out});
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    torch::Tensor g = grads[0].contiguous().clone();
    FromHandle(ctx->saved_data["collectives"])->AllReduceSum({g});
    return {g, torch::Tensor()};
  }
};

class AllGatherFunction : public torch::autograd::Function<AllGatherFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               int64_t handle) {
    ctx->saved_data["collectives"] = handle;
    ctx->saved_data["rows"] = x.size(0);
    return FromHandle(handle)->AllGather(x.contiguous());
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    Collectives* c = FromHandle(ctx->saved_data["collectives"]);
    const int64_t rows = ctx->saved_data["rows"].toInt();
    torch::Tensor g = grads[0].contiguous().clone();
    c->AllReduceSum({g});
    return {g.narrow(0, c->rank() * rows, rows).clone(), torch::Tensor()};
  }
};

}  // namespace

int SetModuleCollectives(torch::nn::Module& root, std::shared_ptr<Collectives> collectives) {
  int count = 0;
  if (auto* self = dynamic_cast<CollectiveUser*>(&root)) {
    self->SetCollectives(collectives);
    ++count;
  }
  for (const std::shared_ptr<torch::nn::Module>& m : root.modules(/*include_self=*/false)) {
    if (auto* user = dynamic_cast<CollectiveUser*>(m.get())) {
      user->SetCollectives(collectives);
      ++count;
    }
  }
  return count;
}

torch::Tensor AllGatherAlong(const torch::Tensor& local, int64_t dim, Collectives& collectives) {
  torch::NoGradGuard no_grad;
  if (dim < 0) dim += local.dim();
  const torch::Tensor front = local.transpose(0, dim).contiguous();
  return collectives.AllGather(front).transpose(0, dim).contiguous();
}

torch::Tensor AllReduceSumWithGradient(const torch::Tensor& x, Collectives& collectives) {
  return AllReduceSumFunction::apply(x, Handle(&collectives));
}

torch::Tensor AllGatherWithGradient(const torch::Tensor& x, Collectives& collectives) {
  return AllGatherFunction::apply(x, Handle(&collectives));
}

torch::Tensor GlobalBatch(const torch::Tensor& local, int64_t dim, Collectives* collectives) {
  if (!IsDistributed(collectives)) return local;
  if (dim < 0) dim += local.dim();
  const torch::Tensor front = local.transpose(0, dim).contiguous();
  return AllGatherWithGradient(front, *collectives).transpose(0, dim);
}

}  // namespace tb
