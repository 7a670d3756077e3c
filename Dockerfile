# The image the helm chart runs: the silo (/app/silo) and the client (/app/client).
#   docker build -t ghcr.io/influence/influence .                                  (CPU)
#   docker build --build-arg TORCH_BACKEND=cuda -t ghcr.io/influence/influence-cuda .  (GPU; needs TorchSharp-cuda-linux on the feed)
# Not built on the development machine (it has no Docker engine): see docs/cluster.md "On Kubernetes".
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
ARG TORCH_BACKEND=cpu
WORKDIR /src
COPY . .
RUN dotnet publish src/Silo -c Release -p:TorchBackend=$TORCH_BACKEND -o /app/silo \
 && dotnet publish src/Client -c Release -p:TorchBackend=$TORCH_BACKEND -o /app/client

FROM mcr.microsoft.com/dotnet/aspnet:10.0
COPY --from=build /app /app
# TorchSharp's objects must outlive their native calls: see src/Core/Compute/NativeLifetimeGuard.cs
# (the processes would otherwise re-execute themselves with these at startup).
ENV DOTNET_JITMinOpts=1 DOTNET_TieredCompilation=0
WORKDIR /app
EXPOSE 11111 30000 9400
ENTRYPOINT ["dotnet", "/app/silo/influence-silo.dll"]
